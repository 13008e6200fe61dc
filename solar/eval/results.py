"""Where an H6 result is written, so a partial evaluation can never pass for the full one.

``eval/h6.json`` holds only results under the Open LLM Leaderboard v1 settings: all six tasks,
the leaderboard's shots, no limit, GSM8K strict-match. The tables read that file alone. Any other
evaluation is written beside it under a name that encodes how it differs, e.g.
``eval/h6-arc_challenge-limit4.json``. A full re-evaluation replaces ``h6.json`` atomically and
carries the replaced file's scores in ``history`` (newest first), so no number is ever lost.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from solar.eval.tasks import BENCHMARKS
from solar.runs import write_json

FULL_FILE = "h6.json"
# What a history entry keeps of a replaced result: its numbers and where they came from.
HISTORY_KEYS = ("scores", "h6", "model", "git_sha", "evaluated_at", "lm_eval_version",
                "task_versions", "data_dir", "limit", "n_shot")


def deviations(result: dict) -> list[str]:
    """How ``result``'s settings differ from the leaderboard's, as file-name parts (none: full)."""
    tasks = [t for t in BENCHMARKS if t in result["scores"]]
    parts = [] if len(tasks) == len(BENCHMARKS) else ["+".join(tasks)]
    parts += [f"{t}{n}shot" for t, n in result.get("n_shot", {}).items()
              if t in BENCHMARKS and n != BENCHMARKS[t].num_fewshot]
    if result.get("limit") is not None:
        parts.append(f"limit{result['limit']:g}")
    gsm8k = result.get("metrics", {}).get("gsm8k")
    if gsm8k not in (None, BENCHMARKS["gsm8k"].metric):
        parts.append(gsm8k.split(",")[-1])   # exact_match,flexible-extract -> flexible-extract
    return parts


def is_full(result: dict) -> bool:
    """For readers (the tables): judged from the settings recorded in the result itself, so an
    ``h6.json`` written before partial results had their own files is judged correctly too."""
    return not deviations(result)


def result_file(result: dict) -> str:
    parts = deviations(result)
    return FULL_FILE if not parts else "h6-" + "-".join(parts) + ".json"


def save_result(out_dir: str | Path, result: dict) -> Path:
    """Write ``result`` (adding ``full`` and ``evaluated_at``) to its file; return the path."""
    path = Path(out_dir) / result_file(result)
    result = {**result, "full": is_full(result),
              "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if result["full"] and path.is_file():
        previous = json.loads(path.read_text())
        result["history"] = [{k: previous.get(k) for k in HISTORY_KEYS}] + \
            previous.get("history", [])
    write_json(path, result)   # temp file + rename: a reader never sees half a file
    return path
