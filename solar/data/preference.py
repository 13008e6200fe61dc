"""Preference sources -> canonical pairs ``{"prompt": [messages], "chosen": str, "rejected": str}``.

Zephyr-style, as the paper follows Zephyr: the prompt is every turn but the last; chosen and
rejected are the contents of the last (assistant) turn of each conversation. The pairs are rendered
with the same chat template as SFT (solar/data/encode.py), so DPO sees the prompts SFT trained on.

Sources: Intel/orca_dpo_pairs (system / question / chosen / rejected), allenai/
ultrafeedback_binarized_cleaned (message lists) and Synth. Math-Alignment (Sec. 3), built here by a
join: MetaMathQA rows of MATH origin give the prompt (rephrased question) and chosen (rephrased
answer); the MATH dataset's original solution of the same problem is the rejected answer.

Bad rows never reach the loss: an empty chosen or rejected, chosen == rejected, a conversation not
ending in an assistant turn, or chosen and rejected with different prompts are dropped and counted
per reason in the source's report (printed by solar.train and stored in lineage.json).
"""

from __future__ import annotations

import re
from collections import Counter

import datasets

from solar.data.sources import cap_rows, decontaminate_rows, load_source

PAIR_FEATURES = datasets.Features({
    "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
    "chosen": datasets.Value("string"),
    "rejected": datasets.Value("string"),
    "problem": datasets.Value("string"),  # why a row is unusable ("" when it is fine)
})


def _turns(system: str, user: str) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}]


def _problem(chosen: str, rejected: str) -> str:
    if not chosen.strip():
        return "empty_chosen"
    if not rejected.strip():
        return "empty_rejected"
    if chosen == rejected:
        return "chosen_equals_rejected"
    return ""


def orca_pair(row: dict) -> dict:
    return {"prompt": _turns(row["system"] or "", row["question"]), "chosen": row["chosen"] or "",
            "rejected": row["rejected"] or "",
            "problem": _problem(row["chosen"] or "", row["rejected"] or "")}


def zephyr_pair(row: dict) -> dict:
    """UltraFeedback message lists: prompt = all turns but the last; responses = the last turn."""
    chosen, rejected = list(row["chosen"] or []), list(row["rejected"] or [])
    prompt = [{"role": m["role"], "content": m["content"]} for m in chosen[:-1]]
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or \
            rejected[-1]["role"] != "assistant" or not prompt:
        return {"prompt": prompt, "chosen": "", "rejected": "", "problem": "not_a_conversation"}
    if [(m["role"], m["content"]) for m in rejected[:-1]] != [(m["role"], m["content"])
                                                              for m in prompt]:
        return {"prompt": prompt, "chosen": "", "rejected": "", "problem": "prompts_differ"}
    c, r = chosen[-1]["content"] or "", rejected[-1]["content"] or ""
    return {"prompt": prompt, "chosen": c, "rejected": r, "problem": _problem(c, r)}


def normalise_problem(text: str) -> str:
    """Join key of a MATH problem: whitespace-insensitive (copies differ in line breaks)."""
    return re.sub(r"\s+", " ", text).strip()


def synth_math_alignment(questions: datasets.Dataset, solutions: datasets.Dataset,
                         types: list[str] | None) -> tuple[datasets.Dataset, dict]:
    """Pairs from MetaMathQA rows (of the listed ``types``) joined with MATH's original solutions.

    prompt = the MetaMathQA query (the rephrased question), chosen = its response (the rephrased
    answer), rejected = the MATH solution of ``original_question``. Rows whose original problem is
    not in ``solutions`` are counted as ``no_original_solution``.
    """
    report = {"rows": len(questions)}
    if types:
        keep = set(types)
        questions = questions.filter(lambda r: r["type"] in keep, desc="synth math: types")
        report["after_types"] = len(questions)
    original = {}
    for problem, solution in zip(solutions["problem"], solutions["solution"]):
        original.setdefault(normalise_problem(problem), solution)

    def pair(row):
        solution = original.get(normalise_problem(row["original_question"]))
        if solution is None:
            return {"prompt": _turns("", row["query"]), "chosen": "", "rejected": "",
                    "problem": "no_original_solution"}
        return {"prompt": _turns("", row["query"]), "chosen": row["response"],
                "rejected": solution, "problem": _problem(row["response"], solution)}

    pairs = questions.map(pair, remove_columns=questions.column_names, features=PAIR_FEATURES,
                          desc="synth math: join")
    return pairs, report


def prepare_preference_source(name: str, spec: dict, world: str,
                              cache_dir) -> tuple[datasets.Dataset, dict]:
    """Load, map to pairs, drop and count bad rows, decontaminate, cap: one source's pairs."""
    schema = spec["schema"]
    if schema == "synth_math_alignment":
        q_spec, s_spec = dict(spec["questions"]), dict(spec["solutions"])
        pairs, report = synth_math_alignment(
            load_source(f"{name}.questions", q_spec, world, cache_dir),
            load_source(f"{name}.solutions", s_spec, world, cache_dir), q_spec.get("types"))
    else:
        ds = load_source(name, spec, world, cache_dir)
        report = {"rows": len(ds)}
        fn = {"orca_dpo_pairs": orca_pair, "ultrafeedback": zephyr_pair}[schema]
        pairs = ds.map(fn, remove_columns=ds.column_names, features=PAIR_FEATURES,
                       desc=f"{name}: pairs")
    problems = Counter(p for p in pairs["problem"] if p)
    if problems:
        report["dropped"] = dict(problems)
        print(f"source '{name}': dropped {sum(problems.values())} unusable pairs {dict(problems)}")
        pairs = pairs.filter(lambda r: not r["problem"], desc=f"{name}: drop bad pairs")
    pairs = pairs.remove_columns("problem")
    pairs = decontaminate_rows(name, pairs, spec.get("decontaminate"), world, cache_dir, report)
    return cap_rows(name, pairs, spec, report), report
