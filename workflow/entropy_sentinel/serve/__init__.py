"""Serving: reading traffic logs, scoring, monitoring and the command line."""
