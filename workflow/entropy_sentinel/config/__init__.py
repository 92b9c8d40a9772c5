"""Configuration: the schema's defaults, loading and validation, the plan and its cost."""
