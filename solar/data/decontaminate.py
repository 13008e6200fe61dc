"""N-gram decontamination of training data against the six H6 evaluation sets.

A training row is dropped when any of its word n-grams (13 by default, as in GPT-3 / lm-eval's
decontamination) also occurs in a benchmark item. Both sides are normalised the same way first:
lowercase, punctuation removed, whitespace collapsed, so formatting does not hide an overlap.
Texts shorter than n words have no n-gram and never match: a short answer ("4", "Paris") shared
with a benchmark is not evidence of contamination.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Callable, Iterable
from pathlib import Path

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")

# benchmark -> (folder, evaluation split file, columns whose text is compared), ../shared/data layout
EVAL_SETS = {
    "arc_challenge": ("arc_challenge", "test", ("question", "choices.text")),
    "hellaswag": ("hellaswag", "validation", ("ctx", "endings")),
    "mmlu": ("mmlu", "test", ("question", "choices")),
    "truthfulqa_mc2": ("truthfulqa_mc", "validation", ("question", "mc2_targets.choices")),
    "winogrande": ("winogrande", "validation", ("sentence",)),
    "gsm8k": ("gsm8k", "test", ("question", "answer")),
}


def normalize(text: str) -> list[str]:
    return _PUNCT.sub(" ", text.lower()).split()


def ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


class Decontaminator:
    """Holds the benchmark n-grams; ``overlaps(text)`` says whether a training text shares one."""

    def __init__(self, benchmark_texts: Iterable[str], n: int = 13):
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        for text in benchmark_texts:
            self.grams |= ngrams(normalize(text), n)

    def overlaps(self, text: str) -> bool:
        words = normalize(text)
        return any(tuple(words[i:i + self.n]) in self.grams
                   for i in range(len(words) - self.n + 1))


def _field(row: dict, dotted: str) -> list[str]:
    value = row
    for key in dotted.split("."):
        value = value[key]
    return value if isinstance(value, list) else [value]


def benchmark_texts(data_dir: str | os.PathLike, benchmarks: Iterable[str] | None = None
                    ) -> list[str]:
    """Question and answer texts of the benchmarks' evaluation sets in ``data_dir``.

    ``data_dir``: a folder in the ../shared/data layout, e.g. the tiny world's
    ``solar.data.tiny.benchmarks.materialize_benchmarks(cache_dir)``.
    """
    texts = []
    for name in benchmarks or EVAL_SETS:
        if name not in EVAL_SETS:
            raise KeyError(f"unknown benchmark '{name}' (known: {list(EVAL_SETS)})")
        folder, split, columns = EVAL_SETS[name]
        path = Path(data_dir) / folder / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"decontamination needs benchmark file {path}")
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                for col in columns:
                    texts.extend(str(t) for t in _field(row, col))
    return texts


def filter_rows(rows: Iterable[dict], text_fn: Callable[[dict], str],
                decontaminator: Decontaminator) -> tuple[list[dict], int]:
    """(rows without a benchmark overlap, number removed); ``text_fn`` gives a row's text."""
    kept, removed = [], 0
    for row in rows:
        if decontaminator.overlaps(text_fn(row)):
            removed += 1
        else:
            kept.append(row)
    return kept, removed
