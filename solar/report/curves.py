"""Training curves read back from a run's own files, whichever logger wrote them.

``logger=csv``: ``<run>/metrics/metrics.csv`` (Lightning's CSVLogger, one sparse row per log
call). ``logger=wandb``: the newest ``<run>/wandb/{offline-,}run-*`` read offline through
``wandb leet inspect --json`` (one JSON record per line; history records carry the logged items).
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

STEP_KEYS = ("trainer/global_step", "step", "_step")


def csv_records(path: Path) -> list[dict[str, float]]:
    records = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for key, value in raw.items():
                try:
                    row[key] = float(value)
                except (TypeError, ValueError):
                    continue       # empty cell: not logged in this call
            records.append(row)
    return records


def wandb_records(run_path: Path) -> list[dict[str, float]]:
    """History items of an offline (or synced) W&B run directory, via wandb's own reader."""
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json",
                          str(run_path)], capture_output=True, text=True, check=True).stdout
    records = []
    for line in out.splitlines():
        record = json.loads(line)
        if record.get("type") == "history":
            item = record["history"].get("item", {})
            records.append({k: float(v) for k, v in item.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return records


def wandb_run_path(run_dir: Path) -> Path | None:
    # offline-run-20261203_113726-<id> / run-20261203_113726-<id>: the newest by its timestamp
    found = sorted(Path(run_dir).glob("wandb/*run-*"),
                   key=lambda p: re.search(r"run-(\d{8}_\d{6})", p.name).group(1)
                   if re.search(r"run-(\d{8}_\d{6})", p.name) else "")
    return found[-1] if found else None


def read_records(run_dir: Path) -> list[dict[str, float]]:
    """Every logged row of the run, oldest first; [] when the run has no metrics files."""
    path = Path(run_dir) / "metrics" / "metrics.csv"
    if path.is_file():
        return csv_records(path)
    wandb_path = wandb_run_path(run_dir)
    return wandb_records(wandb_path) if wandb_path else []


def series(records: list[dict[str, float]], key: str,
           x: str | None = "tokens_seen") -> list[tuple[float, float]]:
    """(x, value) points of ``key``. ``x`` (tokens_seen) is carried forward from the last row
    that logged it (val/loss is logged apart from the train step that logs tokens_seen); the
    step when ``x`` is None or the run never logged it."""
    points, last_x = [], None
    for i, row in enumerate(records):
        if x is not None and x in row:
            last_x = row[x]
        if key in row and not math.isnan(row[key]):
            step = next((row[k] for k in STEP_KEYS if k in row), float(i))
            points.append((last_x if last_x is not None else step, row[key]))
    return points
