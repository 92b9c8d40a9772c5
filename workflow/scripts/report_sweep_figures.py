"""Snakemake script of rule `report_sweep_figures`: the sweep's report figures."""

import pandas as pd

from entropy_sentinel.report import render as reports
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

log_to(snakemake.log[0], "report_sweep_figures", inputs=snakemake.input)
reports.plot_mae_vs_k(pd.read_csv(snakemake.input.mae_vs_k), snakemake.output.mae_vs_k)
