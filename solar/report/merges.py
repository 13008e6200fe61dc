"""The merge view: each merge run against its parents, column by column (the notebook's last
section). Parents come from the run's own lineage.json, else from its ablation config."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from solar.report.paper import columns
from solar.report.results import read_result
from solar.runs import CONF_DIR, run_dir


def merge_parents(run: str, runs_root, scale: str) -> list[str]:
    lineage = run_dir(runs_root, scale, run) / "lineage.json"
    if lineage.is_file():
        data = json.loads(lineage.read_text())
        if data.get("method") in {"average", "slerp", "ties", "dare"}:
            return [Path(p).name if "/" in p else p for p in data.get("parents", [])]
    path = CONF_DIR / "ablation" / f"{run}.yaml"
    spec = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return list((spec or {}).get("merge", {}).get("models", [])) if spec.get("entry") == "merge" \
        else []


def merge_runs() -> list[str]:
    """Every merge ablation (``entry: merge``), in name order."""
    return sorted(p.stem for p in (CONF_DIR / "ablation").glob("*.yaml")
                  if (yaml.safe_load(p.read_text()) or {}).get("entry") == "merge")


def merge_view(merge: str, runs_root, scale: str) -> str:
    """Markdown: the merge and its parents, one column per benchmark; the last line says how far
    the merge is above (+) or below (−) the better parent in each column."""
    names = [merge] + merge_parents(merge, runs_root, scale)
    results = {n: read_result(run_dir(runs_root, scale, n)) for n in names}
    cols = columns()
    lines = ["| run | " + " | ".join(cols.values()) + " |",
             "|---|" + "---:|" * len(cols)]
    for name in names:
        cells = [f"{v:.2f}" if (v := results[name].value(c)) is not None else "–" for c in cols]
        lines.append(f"| {name}{' (merge)' if name == merge else ''} | " + " | ".join(cells) + " |")
    gains = []
    for c in cols:
        ours = results[merge].value(c)
        parents = [results[p].value(c) for p in names[1:]]
        if ours is None or not parents or any(p is None for p in parents):
            gains.append("–")
        else:
            gains.append(f"{round(ours, 2) - round(max(parents), 2):+.2f}")
    lines.append("| merge − best parent | " + " | ".join(gains) + " |")
    return "\n".join(lines) + "\n"
