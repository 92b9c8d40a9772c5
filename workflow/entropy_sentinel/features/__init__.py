"""Features: entropy profiles and their summary statistics."""
