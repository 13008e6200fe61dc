# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Compare ablations: the paper's tables, ours beside them
#
# Point `RUNS_ROOT` at a runs root (the `paths.runs` of your runs; `$SOLAR_RUNS` by default) and
# `SCALE` at `tiny` or `paper`. Every number comes from the runs' own files: `eval/h6.json` for
# the tables, `metrics/metrics.csv` or the W&B run for the curves. The same code writes
# `python -m solar.report table=all` (experiments/README.md).
#
# Kept in git as this jupytext percent script, paired with `compare_ablations.ipynb` (no
# outputs); `jupytext --sync notebooks/compare_ablations.py` refreshes the pair.

# %%
import os

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from solar.report.curves import read_records, series
from solar.report.merges import merge_runs, merge_view
from solar.report.paper import TABLES, family, table_rows
from solar.report.tables import build_table, render_markdown
from solar.runs import run_dir

RUNS_ROOT = os.environ.get("SOLAR_RUNS", "runs")
SCALE = os.environ.get("SOLAR_SCALE", "tiny")
FAMILY = "sft"          # the family whose loss curves to draw: sft, dpo, cpt

# %% [markdown]
# ## The tables: ours (paper[, Δ])
# "–" marks a row not evaluated yet, with the command that produces it below the table.

# %%
for number in TABLES:
    display(Markdown(render_markdown(build_table(number, RUNS_ROOT, SCALE))))

# %% [markdown]
# ## Loss curves of a family (train and validation loss against tokens seen)

# %%
runs = sorted({r for n in TABLES for r in table_rows(n) if family(r) == FAMILY})
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for run in runs:
    records = read_records(run_dir(RUNS_ROOT, SCALE, run))
    for ax, key in zip(axes, ("train/loss", "val/loss")):
        points = series(records, key)
        if points:
            ax.plot(*zip(*points), label=run, marker=".")
for ax, key in zip(axes, ("train/loss", "val/loss")):
    ax.set(title=key, xlabel="tokens seen")
    if ax.lines:
        ax.legend()
plt.show()

# %% [markdown]
# ## DPO: reward margins and accuracies against steps

# %%
dpo = sorted({r for n in TABLES for r in table_rows(n) if family(r) == "dpo"})
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for run in dpo:
    records = read_records(run_dir(RUNS_ROOT, SCALE, run))
    for ax, key in zip(axes, ("train/rewards/margins", "train/rewards/accuracies")):
        points = series(records, key, x=None)
        if points:
            ax.plot(*zip(*points), label=run, marker=".")
for ax, key in zip(axes, ("train/rewards/margins", "train/rewards/accuracies")):
    ax.set(title=key, xlabel="step")
    if ax.lines:
        ax.legend()
plt.show()

# %% [markdown]
# ## Merges against their parents, column by column

# %%
for merge in merge_runs():
    display(Markdown(f"### {merge}\n\n" + merge_view(merge, RUNS_ROOT, SCALE)))
