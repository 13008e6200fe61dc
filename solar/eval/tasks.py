"""lm-eval task YAMLs for H6: lm-eval's own built-in tasks, optionally pointed at local files.

Each generated YAML ``include:``s the installed built-in task file by absolute path and overrides
only the dataset fields (``dataset_path: json``, ``dataset_name: null``, ``dataset_kwargs.data_files``,
and ``*_split: null`` for splits the local copy does not have) plus ``num_fewshot``. Prompts,
filters and metrics therefore stay exactly lm-eval's. lm-eval merges included keys shallowly:
a dict override such as ``dataset_kwargs`` replaces the included one, it is not merged.

A local ``data_dir`` has the layout of ../shared/data: ``<data_dir>/<benchmark dir>/<split>.jsonl``
in the hub schema. MMLU's hub dataset has one config per subject while the local copy holds all
subjects in one file with a ``subject`` column, so its rows are split into per-subject files
next to the YAMLs (the built-in ``mmlu_<subject>`` task is still the one used).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import lm_eval.tasks
import yaml

LM_EVAL_TASKS = Path(lm_eval.tasks.__file__).resolve().parent


@dataclass(frozen=True)
class Benchmark:
    """One H6 column: the built-in lm-eval task, its leaderboard setting and its local files."""
    title: str        # column title in the paper's tables
    builtin: str      # built-in task YAML, relative to lm_eval/tasks (MMLU: a {subject} pattern)
    directory: str    # folder under data_dir (same names as ../shared/data)
    eval_split: str   # lm-eval split key -> local file name, for the evaluation docs
    shot_split: str | None  # lm-eval split key whose file gives the few-shot rows
    num_fewshot: int  # Open LLM Leaderboard v1 setting
    metric: str       # "<metric>,<filter>" key in lm-eval's results
    columns: tuple[str, ...]  # hub-schema columns lm-eval's prompts read
    null_splits: tuple[str, ...] = field(default=())  # built-in splits a local copy lacks


# Paper column order (Tables 2-7): ARC, HellaSwag, MMLU, TruthfulQA, Winogrande, GSM8K.
BENCHMARKS: dict[str, Benchmark] = {
    "arc_challenge": Benchmark(
        "ARC", "arc/arc_challenge.yaml", "arc_challenge", "test", "train", 25, "acc_norm,none",
        ("id", "question", "choices", "answerKey"), ("validation_split",)),
    "hellaswag": Benchmark(
        "HellaSwag", "hellaswag/hellaswag.yaml", "hellaswag", "validation", "train", 10,
        "acc_norm,none", ("activity_label", "ctx_a", "ctx_b", "endings", "label")),
    "mmlu": Benchmark(
        "MMLU", "mmlu/default/mmlu_{subject}.yaml", "mmlu", "test", "dev", 5, "acc,none",
        ("question", "subject", "choices", "answer")),
    "truthfulqa_mc2": Benchmark(
        "TruthfulQA", "truthfulqa/truthfulqa_mc2.yaml", "truthfulqa_mc", "validation", None, 0,
        "acc,none", ("question", "mc2_targets")),
    "winogrande": Benchmark(
        "Winogrande", "winogrande/default.yaml", "winogrande", "validation", "train", 5,
        "acc,none", ("sentence", "option1", "option2", "answer")),
    "gsm8k": Benchmark(
        "GSM8K", "gsm8k/gsm8k.yaml", "gsm8k", "test", "train", 5, "exact_match,strict-match",
        ("question", "answer")),
}
# lm-eval split keys of a task config -> which of them a few-shot file stands for
_SPLIT_KEYS = {"test": "test_split", "validation": "validation_split", "train": "training_split",
               "dev": "fewshot_split"}


class BenchmarkDataError(ValueError):
    """A data_dir lacks a benchmark file or a column (named in the message)."""


def mmlu_subjects() -> list[str]:
    """The 57 subjects lm-eval ships a ``mmlu_<subject>`` task for."""
    return sorted(p.stem.removeprefix("mmlu_")
                  for p in (LM_EVAL_TASKS / "mmlu" / "default").glob("mmlu_*.yaml"))


def read_rows(path: Path, columns: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise BenchmarkDataError(f"missing benchmark file {path}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise BenchmarkDataError(f"benchmark file {path} has no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise BenchmarkDataError(f"benchmark file {path} lacks column(s) {missing} "
                                 f"(hub schema needs {list(columns)})")
    return rows


def _check_shots(path: Path, n_rows: int, shots: int, what: str, task: str) -> None:
    if n_rows < shots:
        raise BenchmarkDataError(f"{path} has {n_rows} few-shot rows{what}, {shots}-shot needs "
                                 f"at least {shots} (add rows, or lower eval.num_fewshot.{task})")


def _require_shot_file(path: Path, task: str, shots: int) -> None:
    """A missing few-shot split: say what it is for and both ways on (a user may well hold only
    the evaluation split, e.g. Winogrande's validation)."""
    if not path.is_file():
        raise BenchmarkDataError(
            f"missing {path}: the few-shot rows of {task} ({shots}-shot); add that split there "
            f"(hub schema), or set eval.num_fewshot.{task}=0 to run {task} 0-shot: not the "
            "leaderboard setting (lower scores), so the result is written as a partial "
            "evaluation (eval/h6-<settings>.json), not eval/h6.json")


def _write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _local_fields(data_files: dict[str, str], null_splits: tuple[str, ...]) -> dict:
    fields = {"dataset_path": "json", "dataset_name": None,
              "dataset_kwargs": {"data_files": data_files}}
    fields.update({key: None for key in null_splits})
    return fields


def write_task_yamls(out_dir: str | os.PathLike, tasks: list[str], num_fewshot: dict[str, int],
                     data_dir: str | os.PathLike | None = None) -> dict[str, list[Path]]:
    """Write one YAML per lm-eval task into ``out_dir``; return benchmark -> YAML paths.

    ``data_dir`` None: the built-in hub datasets. Every file and column is checked before anything
    is written, so a bad data_dir fails with the missing piece named and leaves no partial output.
    """
    unknown = [t for t in tasks if t not in BENCHMARKS]
    if unknown:
        raise KeyError(f"unknown H6 task(s) {unknown}; known: {list(BENCHMARKS)}")
    out_dir = Path(out_dir)
    plans: dict[str, list[tuple[str, dict]]] = {}  # benchmark -> [(file stem, yaml cfg)]
    mmlu_files: dict[str, list[dict]] = {}         # per-subject local file -> rows
    for name in tasks:
        bench = BENCHMARKS[name]
        shots = int(num_fewshot.get(name, bench.num_fewshot))
        null_splits = bench.null_splits
        if shots == 0 and bench.shot_split and bench.shot_split != "dev":
            null_splits += (_SPLIT_KEYS[bench.shot_split],)  # 0-shot: no few-shot file needed
        if name == "mmlu":
            plans[name] = _mmlu_plan(out_dir, bench, shots, data_dir, mmlu_files)
            continue
        cfg = {"include": str(LM_EVAL_TASKS / bench.builtin), "num_fewshot": shots}
        if data_dir is not None:
            folder = Path(data_dir) / bench.directory
            splits = [bench.eval_split] + ([bench.shot_split] if shots and bench.shot_split
                                           else [])
            files = {}
            for split in splits:
                path = folder / f"{split}.jsonl"
                if split == bench.shot_split:
                    _require_shot_file(path, name, shots)
                rows = read_rows(path, bench.columns)
                if split == bench.shot_split:
                    _check_shots(path, len(rows), shots, "", name)
                files[split] = str(path.resolve())
            cfg.update(_local_fields(files, null_splits))
        plans[name] = [(name, cfg)]
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, rows in mmlu_files.items():
        Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {name: [_write_yaml(out_dir / f"{stem}.yaml", cfg) for stem, cfg in plan]
            for name, plan in plans.items()}


def _mmlu_plan(out_dir: Path, bench: Benchmark, shots: int, data_dir, mmlu_files) -> list:
    """One built-in ``mmlu_<subject>`` task per subject present (all 57 from the hub)."""
    known = set(mmlu_subjects())
    if data_dir is None:
        return [(f"mmlu_{s}", {"include": str(LM_EVAL_TASKS / bench.builtin.format(subject=s)),
                               "num_fewshot": shots}) for s in sorted(known)]
    folder = Path(data_dir) / bench.directory
    by_split: dict[str, dict[str, list[dict]]] = {}
    if shots:
        _require_shot_file(folder / f"{bench.shot_split}.jsonl", "mmlu", shots)
    for split in (bench.eval_split, bench.shot_split):
        groups = defaultdict(list)
        for row in read_rows(folder / f"{split}.jsonl", bench.columns):
            groups[row["subject"]].append(row)
        by_split[split] = groups
    plan = []
    for subject in sorted(by_split[bench.eval_split]):
        if subject not in known:
            raise BenchmarkDataError(f"{folder / 'test.jsonl'}: subject '{subject}' is not one of "
                                     f"lm-eval's 57 MMLU subjects")
        shot_rows = by_split[bench.shot_split].get(subject, [])
        _check_shots(folder / "dev.jsonl", len(shot_rows), shots, f" for subject '{subject}'",
                     "mmlu")
        files = {}
        for split, rows in ((bench.eval_split, by_split[bench.eval_split][subject]),
                            (bench.shot_split, shot_rows)):
            path = (out_dir / f"mmlu_{subject}.{split}.jsonl").resolve()
            mmlu_files[str(path)] = rows
            files[split] = str(path)
        cfg = {"include": str(LM_EVAL_TASKS / bench.builtin.format(subject=subject)),
               "num_fewshot": shots, **_local_fields(files, ())}
        plan.append((f"mmlu_{subject}", cfg))
    return plan


def task_versions(results: dict) -> dict[str, object]:
    """lm-eval's per-task version numbers (``metadata.version`` of each task YAML)."""
    return dict(sorted(results.get("versions", {}).items()))
