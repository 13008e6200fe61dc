"""One row of ours: a run's ``eval/h6.json`` as points, with what makes it differ from the paper's.

Only ``h6.json`` is read: it holds full-settings results (a partial evaluation goes beside it as
``h6-<settings>.json``). An older file may still carry ``limit`` or miss a column; both are kept
and flagged, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from solar.report.paper import benchmarks, columns, paper


@dataclass
class Result:
    run: str
    path: Path
    found: bool = False                 # eval/h6.json exists and parses
    values: dict[str, float | None] = field(default_factory=dict)   # points (x 100), H6 too
    partial: bool = False               # eval.limit set or a column missing: not comparable
    notes: list[str] = field(default_factory=list)   # settings that differ from the leaderboard's
    lm_eval_version: str | None = None

    def value(self, column: str) -> float | None:
        return self.values.get(column)


def read_result(run_dir: Path) -> Result:
    path = Path(run_dir) / "eval" / "h6.json"
    result = Result(run=Path(run_dir).name, path=path,
                    values={c: None for c in columns()})
    if not path.is_file():
        return result
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        result.notes.append(f"unreadable {path.name}: {err}")
        return result
    scores = data.get("scores") if isinstance(data, dict) else None
    if not isinstance(scores, dict):
        result.notes.append(f"{path.name} has no `scores` (not an eval/h6.json of solar.evaluate)")
        return result
    result.found = True
    titles = columns()
    for name in benchmarks():
        score = scores.get(name)
        result.values[name] = 100.0 * score if isinstance(score, (int, float)) else None
    missing = [titles[n] for n in benchmarks() if result.values[n] is None]
    if missing:
        result.partial = True
        result.notes.append(f"no {', '.join(missing)} (older schema or partial evaluation); "
                            "H6 needs all six")
    else:
        h6 = data.get("h6")
        six = [result.values[n] for n in benchmarks()]
        result.values["h6"] = float(h6) if isinstance(h6, (int, float)) else sum(six) / len(six)
    if data.get("limit") is not None:
        result.partial = True
        result.notes.append(f"eval.limit={data['limit']}: a partial evaluation, not comparable")
    board = paper()["leaderboard"]["n_shot"]
    for name, shots in (data.get("n_shot") or {}).items():
        if name in board and shots != board[name]:
            result.notes.append(f"{titles[name]} {shots}-shot (leaderboard: {board[name]})")
    result.lm_eval_version = data.get("lm_eval_version")
    return result
