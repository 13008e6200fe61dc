"""PNGs beside the tables: grouped bars (ours vs paper), loss curves per family, DPO rewards.

Fixed figure sizes (no tight bbox), so every PNG has a known pixel size: FIGSIZE x DPI.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # files only; no display on a cluster node
import matplotlib.pyplot as plt

from solar.report.curves import read_records, series
from solar.report.paper import columns
from solar.report.tables import Table, write_atomic

DPI = 100
BARS_SIZE = (12.0, 4.5)       # 1200 x 450 px
CURVES_SIZE = (10.0, 4.0)     # 1000 x 400 px
REWARDS = ("rewards/margins", "rewards/accuracies")


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path


def bars(table: Table, path: Path) -> Path:
    """H6 and the six columns: our rows (left) beside the paper's (right), same y scale."""
    cols = columns()
    fig, axes = plt.subplots(1, 2, figsize=BARS_SIZE, dpi=DPI, sharey=True)
    width = 0.8 / max(len(table.rows), 1)
    for ax, side in zip(axes, ("ours", "paper")):
        for i, row in enumerate(table.rows):
            values = ([row.result.value(c) for c in cols] if side == "ours" else
                      [(row.paper or {}).get(c) for c in cols])
            xs = [j + (i - (len(table.rows) - 1) / 2) * width for j in range(len(cols))]
            ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=row.label)
        ax.set_xticks(range(len(cols)), list(cols.values()), rotation=20, fontsize=8)
        ax.set_title(f"{side} ({table.scale})" if side == "ours" else "paper")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("score (points)")
    axes[1].legend(fontsize=7, loc="upper right")
    name = f"Table {table.number}" if table.number is not None else "Other runs"
    fig.suptitle(f"{name}: ours vs the paper")
    return _save(fig, path)


def curves(runs: dict[str, Path], keys: tuple[str, ...], x: str | None, title: str,
           path: Path) -> Path | None:
    """One panel per key, one line per run; None when no run logged any of the keys."""
    data = {run: read_records(d) for run, d in runs.items()}
    if not any(series(recs, k, x) for recs in data.values() for k in keys):
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=CURVES_SIZE, dpi=DPI, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for run, recs in data.items():
            points = series(recs, key, x)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=run,
                        marker="." if len(points) < 20 else None)
        ax.set_title(key)
        ax.set_xlabel(x or "step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def table_plots(table: Table, run_dirs: dict[str, Path], families: dict[str, str],
                out_dir: Path) -> list[Path]:
    """table<N>.png; table<N>_loss_<family>.png per family with curves; table<N>_rewards.png."""
    paths = [bars(table, Path(out_dir) / f"{table.key}.png")]
    by_family: dict[str, dict[str, Path]] = {}
    for run, d in run_dirs.items():
        by_family.setdefault(families.get(run, "other"), {})[run] = d
    for family, runs in by_family.items():
        made = curves(runs, ("train/loss", "val/loss"), "tokens_seen",
                      f"{table.key}: {family} loss", Path(out_dir) / f"{table.key}_loss_{family}.png")
        paths += [made] if made else []
    made = curves(run_dirs, tuple(f"train/{k}" for k in REWARDS), None,
                  f"{table.key}: DPO rewards", Path(out_dir) / f"{table.key}_rewards.png")
    return paths + ([made] if made else [])
