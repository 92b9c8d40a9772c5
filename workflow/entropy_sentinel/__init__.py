"""Entropy Sentinel: label-free LLM accuracy estimation from decoding-entropy traces.

The package holds all logic and has no Snakemake imports; the workflow rules call it.
"""

__version__ = "0.1.0"
