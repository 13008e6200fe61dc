"""The Table 8 filter: drop OpenOrca rows that come from FLAN/NIv2/CoT tasks related to the benchmarks.

OpenOrca ids carry only the sub-mixture (``flan.``, ``niv.``, ``cot.``, ``t0.`` + a number), never the
task name, so a row's task is recognised from its id prefix plus the prompt templates the task was
rendered with in FLAN v2 (FLAN templates for ai2_arc, hellaswag, winogrande, drop; the CoT templates of
GSM8K; the NIv2 task definitions). A row is dropped when its prefix matches and any signature of the
task matches its ``question`` (or ``system_prompt`` for NIv2 definitions). The signatures are
heuristics by construction: pair this filter with the n-gram decontamination filter for an exact
guarantee against the evaluation sets.
"""

from __future__ import annotations

import re

# Table 8 of the paper: tasks whose OpenOrca rows are filtered out of the SFT data.
TABLE8_TASKS = [
    "task228_arc_answer_generation_easy", "ai2_arc/ARC-Challenge:1.0.0", "ai2_arc/ARC-Easy:1.0.0",
    "task229_arc_answer_generation_hard", "hellaswag:1.1.0", "task1389_hellaswag_completion",
    "cot_gsm8k", "cot_gsm8k_ii", "drop:2.0.0", "winogrande:1.1.0",
]

_ARC_OPTIONS = r"(OPTIONS:|Options:|Choose (your answer )?from:|Pick (the|your) answer from)"
_NEXT = (r"(What happens next|What is the most logical next event|What most naturally follows|"
         r"Continue writing the next sentence|Write the next sentence in (this paragraph|the "
         r"following story)|How does the next paragraph end|This is a test of commonsense)")

# task -> (id prefixes, regexes on the question, regexes on the system prompt)
SIGNATURES: dict[str, tuple[tuple[str, ...], list[str], list[str]]] = {
    "ai2_arc/ARC-Challenge:1.0.0": (("flan.",), [rf"(?s)^(Question: )?.+\?\s*\n+{_ARC_OPTIONS}",
                                                 r"(?i)science question"], []),
    "ai2_arc/ARC-Easy:1.0.0": (("flan.",), [rf"(?s)^(Question: )?.+\?\s*\n+{_ARC_OPTIONS}"], []),
    "hellaswag:1.1.0": (("flan.",), [_NEXT], []),
    "winogrande:1.1.0": (("flan.",), [r"(?s)(How does the sentence end|Fill in the blank|"
                                      r"Which of the following options).*\b_\b"], []),
    "drop:2.0.0": (("flan.",), [r"(Answer based on context:|Answer this question based on the "
                                r"article:|Based on the above article, answer a question)"], []),
    "cot_gsm8k": (("cot.",), [r"(?s)\b\d+\b.*\?.*(Let's think|step-by-step|step by step|"
                              r"Chain of thought)"], []),
    "cot_gsm8k_ii": (("cot.",), [r"(?i)come up with a question and reasoning.*\b\d+\b"], []),
    "task228_arc_answer_generation_easy": (("niv.",), [], [r"(?i)science question.*(easy|arc)"]),
    "task229_arc_answer_generation_hard": (("niv.",), [], [r"(?i)science question.*(hard|arc)"]),
    "task1389_hellaswag_completion": (("niv.",), [], [r"(?i)(hellaswag|most likely (to )?"
                                                      r"(follow|completion|ending))"]),
}


def table8_task(row: dict, tasks: list[str] = TABLE8_TASKS) -> str | None:
    """The Table 8 task an OpenOrca row belongs to, or None."""
    rid, question = row.get("id", ""), row.get("question", "")
    system = row.get("system_prompt", "")
    for task in tasks:
        if task not in SIGNATURES:
            raise KeyError(f"no signature for Table 8 task '{task}' (known: {sorted(SIGNATURES)})")
        prefixes, q_patterns, s_patterns = SIGNATURES[task]
        if not rid.startswith(prefixes):
            continue
        if any(re.search(p, question) for p in q_patterns) or \
                any(re.search(p, system) for p in s_patterns):
            return task
    return None
