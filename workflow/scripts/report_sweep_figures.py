"""Snakemake script of rule `report_sweep_figures`: the sweep's report figures."""

import logging

import pandas as pd

from entropy_sentinel import reports

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
reports.plot_mae_vs_k(pd.read_csv(snakemake.input.mae_vs_k), snakemake.output.mae_vs_k)
