"""The tiny world's six H6 benchmarks, in the hub schemas of the real ones (see ../shared/data).

Built from the same task families as the tiny SFT mix (creature facts, addition, word problems),
and phrased like the SFT answers ("The zorp is red."), so a tiny model trained on that mix scores
above chance and training visibly moves H6. ``materialize_benchmarks`` writes
``<data_dir>/<benchmark>/<split>.jsonl`` in the layout of ../shared/data, so the tiny world and
local copies of the real benchmarks go through the same ``data_dir`` code path.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from solar.data.tiny.world import (COLORS, PLACES, Fact, facts, gsm8k_answer, legs_problem,
                                   word_problem)

LEGS = [2, 4, 6, 8]
LETTERS = "ABCD"


def _claims(f: Fact) -> list[tuple[str, str, list[str]]]:
    """(question, right answer, wrong answers) about one creature, worded like the SFT answers."""
    return [
        (f"What color is the {f.creature}?", f"The {f.creature} is {f.color}.",
         [f"The {f.creature} is {c}." for c in COLORS if c != f.color]),
        (f"Where does the {f.creature} live?", f"The {f.creature} lives in {f.home}.",
         [f"The {f.creature} lives in {p}." for p in PLACES if p != f.home]),
        (f"How many legs does a {f.creature} have?", f"A {f.creature} has {f.legs} legs.",
         [f"A {f.creature} has {n} legs." for n in LEGS if n != f.legs]),
    ]


def _mc(rng: random.Random, right: str, wrong: list[str], k: int = 4) -> tuple[list[str], int]:
    choices = rng.sample(wrong, k - 1) + [right]
    rng.shuffle(choices)
    return choices, choices.index(right)


def _fact_items(rng: random.Random, n: int) -> list[tuple[str, str, list[str]]]:
    world = facts()
    return [rng.choice(_claims(rng.choice(world))) for _ in range(n)]


def arc_challenge(n: int, seed: int) -> list[dict]:
    rng, rows = random.Random(seed), []
    for i, (q, right, wrong) in enumerate(_fact_items(rng, n)):
        choices, gold = _mc(rng, right, wrong)
        rows.append({"id": f"tiny-arc-{seed}-{i}", "question": q,
                     "choices": {"text": choices, "label": list(LETTERS[:len(choices)])},
                     "answerKey": LETTERS[gold]})
    return rows


def hellaswag(n: int, seed: int) -> list[dict]:
    """Context = the start of a fact sentence; endings = its possible completions."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        f = rng.choice(facts())
        kind = rng.randrange(3)
        if kind == 0:
            ctx, right, wrong = f"The {f.creature} is", f"{f.color}.", [f"{c}." for c in COLORS]
        elif kind == 1:
            ctx, right, wrong = f"The {f.creature} lives in", f"{f.home}.", [f"{p}." for p in PLACES]
        else:
            ctx, right, wrong = f"A {f.creature} has", f"{f.legs} legs.", [f"{k} legs." for k in LEGS]
        endings, gold = _mc(rng, right, [w for w in wrong if w != right])
        rows.append({"ind": -1, "activity_label": "Creatures", "ctx_a": ctx, "ctx_b": "",
                     "ctx": ctx, "endings": endings, "source_id": "", "split": "val",
                     "split_type": "indomain", "label": str(gold)})
    return rows


# real MMLU subject names, so lm-eval's built-in mmlu_<subject> tasks apply
MMLU_SUBJECTS = ("elementary_mathematics", "college_biology", "high_school_geography")


def mmlu(n: int, seed: int) -> list[dict]:
    rng, world, rows = random.Random(seed), facts(), []
    for i in range(n):
        subject = MMLU_SUBJECTS[i % len(MMLU_SUBJECTS)]
        f = rng.choice(world)
        if subject == "elementary_mathematics":
            a, b = rng.randint(0, 20), rng.randint(0, 20)
            q, right = f"What is {a} plus {b}?", str(a + b)
            wrong = [str(a + b + d) for d in (-2, -1, 1, 2, 3)]
        elif subject == "college_biology":
            q, right = f"How many legs does a {f.creature} have?", str(f.legs)
            wrong = [str(k) for k in LEGS if k != f.legs]
        else:
            q, right, wrong = f"Where does the {f.creature} live?", f.home, [
                p for p in PLACES if p != f.home]
        choices, gold = _mc(rng, right, wrong)
        rows.append({"question": q, "subject": subject, "choices": choices, "answer": gold})
    return rows


def truthfulqa_mc(n: int, seed: int) -> list[dict]:
    rng, rows = random.Random(seed), []
    for q, right, wrong in _fact_items(rng, n):
        mc1, gold = _mc(rng, right, wrong)
        mc1 = [mc1[gold]] + [c for j, c in enumerate(mc1) if j != gold]  # hub: true answer first
        mc2 = [right] + rng.sample(wrong, 3)
        rows.append({"question": q,
                     "mc1_targets": {"choices": mc1, "labels": [1, 0, 0, 0]},
                     "mc2_targets": {"choices": mc2, "labels": [1, 0, 0, 0]}})
    return rows


def winogrande(n: int, seed: int) -> list[dict]:
    """'The _ is red.' with two creatures, one of which is red."""
    rng, world, rows = random.Random(seed), facts(), []
    while len(rows) < n:
        f, g = rng.sample(world, 2)
        kind = rng.randrange(3)
        attr = [(f.color, g.color, "The _ is {}."), (f.home, g.home, "The _ lives in {}."),
                (f.legs, g.legs, "A _ has {} legs.")][kind]
        if attr[0] == attr[1]:
            continue
        first = rng.random() < 0.5
        o1, o2 = (f.creature, g.creature) if first else (g.creature, f.creature)
        rows.append({"sentence": attr[2].format(attr[0]), "option1": o1, "option2": o2,
                     "answer": "1" if first else "2"})
    return rows


def gsm8k(n: int, seed: int, problem=word_problem) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        wp = problem(rng)
        rows.append({"question": wp.question, "answer": gsm8k_answer(wp)})
    return rows


def write_legs_gsm8k(data_dir: Path) -> Path:
    """An ``eval.data_dir`` holding a GSM8K of ``world.legs_problem`` (test: 40 items, train: the
    few-shot pool), for experiments/tiny_gsm8k.py and its test: the tiny GSM8K's shots and
    strict-match filter, on problems a tiny model can learn (no word of the question copied)."""
    for split, n, seed in (("test", 40, 0), ("train", 50, 1)):
        path = data_dir / "gsm8k" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in gsm8k(n, seed, legs_problem)))
    return data_dir


# benchmark folder -> {split: (generator, rows, seed offset)}: eval splits and few-shot splits
# use different seeds so few-shot examples are not the evaluated items. Eval item counts keep a full
# tiny H6 (the leaderboard's shots: ARC's 25-shot prompts and GSM8K's 5-shot generation are most of
# it) under a minute on one CPU core, so every node of a tiny table is evaluated in CI and the
# 19 evaluations of the tiny paper fit its 15 minutes (one-core seconds, measured: ARC 25-shot
# ~0.5 s per item, TruthfulQA ~0.2, GSM8K up to ~0.5 when a model never stops and generates
# lm-eval's 256 tokens, HellaSwag ~0.12, MMLU and Winogrande ~0.03).
SPLITS = {
    "arc_challenge": {"test": (arc_challenge, 32, 0), "train": (arc_challenge, 50, 1)},
    "hellaswag": {"validation": (hellaswag, 40, 0), "train": (hellaswag, 50, 1)},
    "mmlu": {"test": (mmlu, 45, 0), "dev": (mmlu, 15, 1)},   # 3 subjects x (15 test, 5 dev)
    "truthfulqa_mc": {"validation": (truthfulqa_mc, 30, 0)},  # lm-eval's fixed QA preamble: long
    "winogrande": {"validation": (winogrande, 100, 0), "train": (winogrande, 50, 1)},
    "gsm8k": {"test": (gsm8k, 20, 0), "train": (gsm8k, 50, 1)},
}


def materialize_benchmarks(cache_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write (once) the tiny benchmarks under ``<cache_dir>/tiny_world/benchmarks-s<seed>-<hash>/``,
    keyed by the content of every split, so benchmarks of another version are never read."""
    files = {f"{bench}/{split}.jsonl": "".join(json.dumps(r) + "\n"
                                               for r in generate(n, 1000 * seed + offset))
             for bench, splits in SPLITS.items()
             for split, (generate, n, offset) in splits.items()}
    digest = hashlib.sha1(json.dumps(files, sort_keys=True).encode()).hexdigest()[:10]
    data_dir = Path(cache_dir) / "tiny_world" / f"benchmarks-s{seed}-{digest}"
    for name, text in files.items():
        path = data_dir / name
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return data_dir
