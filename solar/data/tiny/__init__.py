"""The embedded tiny world: generated datasets in every real source's hub schema.

``materialize(name, cache_dir)`` writes generator ``name``'s rows once to
``<cache_dir>/tiny_world/<name>-n<n>-s<seed>-<content hash>/<split>.jsonl`` and returns the path; every later use reads the same
file through the same ``datasets`` loading code the paper scale uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from solar.data.tiny import preference, sources

# name -> (generator(n, seed) -> rows, default number of rows, split name on the hub)
GENERATORS: dict[str, tuple[Callable[[int, int], list[dict]], int, str]] = {
    "alpaca_gpt4": (sources.alpaca_gpt4, 2000, "train"),
    "openorca": (sources.openorca, 2000, "train"),
    "synth_math_instruct": (sources.metamathqa, 2000, "train"),
    "cpt_corpus": (sources.pretraining_corpus, 2000, "train"),
    "orca_dpo_pairs": (preference.orca_dpo_pairs, 2000, "train"),
    "ultrafeedback_clean": (preference.ultrafeedback_clean, 2000, "train_prefs"),
    # the original MATH solutions of the synth_math_instruct rows (same n and seed: keep them equal)
    "competition_math": (preference.competition_math, 2000, "train"),
    # GSM8K-layout exercise pages, only for experiments/tiny_gsm8k.py (cpt_corpus.tiny=worksheets)
    "worksheets": (sources.worksheets, 2000, "train"),
    # the same for problems that need no copying (world.legs_problem), pages and MetaMathQA rows
    "legs_worksheets": (sources.legs_worksheets, 2000, "train"),
    "legs_metamathqa": (sources.legs_metamathqa, 2000, "train"),
    "legs_fewshot_metamathqa": (sources.legs_fewshot_metamathqa, 2000, "train"),
    "legs_competition_math": (preference.legs_competition_math, 2000, "train"),
}
# The tiny tokenizer is trained on these sources only: adding a generator must not change it
# (the stored first losses of the tiny runs depend on its exact merges).
TOKENIZER_SOURCES = ("alpaca_gpt4", "openorca", "synth_math_instruct", "cpt_corpus")


def materialize(name: str, cache_dir: str | os.PathLike, n: int | None = None,
                seed: int = 0) -> Path:
    """Generate (once) and return the jsonl file of tiny-world source ``name``."""
    if name not in GENERATORS:
        raise KeyError(f"the tiny world has no generator '{name}' (known: {sorted(GENERATORS)})")
    generate, default_n, split = GENERATORS[name]
    n = default_n if n is None else n
    # keyed by the rows' content: a generator change never reads rows written by an older one
    # (generating 2,000 rows takes milliseconds; training on stale rows cost a session a day)
    text = "".join(json.dumps(row) + "\n" for row in generate(n, seed))
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    path = Path(cache_dir) / "tiny_world" / f"{name}-n{n}-s{seed}-{digest}" / f"{split}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def all_texts(seed: int = 0) -> list[str]:
    """Every string the tiny world can produce, for training its tokenizer."""
    texts = []
    for name in TOKENIZER_SOURCES:
        generate = GENERATORS[name][0]
        for row in generate(300, seed):
            texts.extend(_strings(row))
    return texts


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
