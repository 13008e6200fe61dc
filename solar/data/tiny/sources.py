"""Generators of the tiny world's training sources, each in the exact hub schema of the real one.

vicgalle/alpaca-gpt4, Open-Orca/OpenOrca (with rows of the Table 8 tasks the filter must drop),
meta-math/MetaMathQA (GSM_* and MATH_* types) and a plain-text pretraining corpus (the ``text``
column of HuggingFaceFW/fineweb-edu). Rows are a pure function of (n, seed).
"""

from __future__ import annotations

import random

from solar.data.tiny.world import (
    FAMILIES,
    facts,
    gsm8k_answer,
    legs_problem,
    make_qa,
    story_sentence,
    word_problem,
)

ALPACA_PREAMBLE = ("Below is an instruction that describes a task. Write a response that "
                   "appropriately completes the request.\n\n")
ALPACA_PREAMBLE_INPUT = ("Below is an instruction that describes a task, paired with an input that "
                         "provides further context. Write a response that appropriately completes "
                         "the request.\n\n")
ORCA_SYSTEM = ["", "You are a helpful assistant.",
               "You are an AI assistant. Provide a short, exact answer."]


def alpaca_gpt4(n: int, seed: int) -> list[dict]:
    """instruction / input / output / text, ``text`` in the dataset's own Alpaca rendering."""
    rng, world, rows = random.Random(seed), facts(), []
    for _ in range(n):
        qa = make_qa(rng, rng.choice(["upper", "color", "home", "legs", "add"]), world)
        instruction, inp = qa.question, ""
        if qa.family == "upper" and rng.random() < 0.5:
            instruction, inp = "Write the given word in capital letters.", qa.question.split()[3]
        if inp:
            text = (f"{ALPACA_PREAMBLE_INPUT}### Instruction:\n{instruction}\n\n### Input:\n{inp}"
                    f"\n\n### Response:\n{qa.answer}")
        else:
            text = f"{ALPACA_PREAMBLE}### Instruction:\n{instruction}\n\n### Response:\n{qa.answer}"
        rows.append({"instruction": instruction, "input": inp, "output": qa.answer, "text": text})
    return rows


TABLE8_PLANTED = ["ai2_arc/ARC-Challenge:1.0.0", "hellaswag:1.1.0", "winogrande:1.1.0", "drop:2.0.0",
                  "cot_gsm8k", "task229_arc_answer_generation_hard"]


def _table8_row(rng: random.Random, i: int, kind: int) -> dict:
    """A row rendered like Table 8 task ``TABLE8_PLANTED[kind]`` (FLAN / CoT / NIv2 templates)."""
    if kind == 0:  # ai2_arc via FLAN
        qa = make_qa(rng, "color")
        q = f"Question: {qa.question}\nOPTIONS:\n- {qa.answer}\n- {qa.wrong}\nAnswer:"
        return {"id": f"flan.{i}", "question": q, "response": qa.answer}
    if kind == 1:  # hellaswag via FLAN
        s = story_sentence(rng)
        q = f"What happens next in this paragraph?\n\n{s}\nOPTIONS:\n- It rains.\n- It snows."
        return {"id": f"flan.{i}", "question": q, "response": "It rains."}
    if kind == 2:  # winogrande via FLAN
        q = ("How does the sentence end?\n\nThe cup did not fit in the box because the _ was too "
             "big.\n\nOPTIONS:\n- cup\n- box")
        return {"id": f"flan.{i}", "question": q, "response": "cup"}
    if kind == 3:  # drop via FLAN
        s = story_sentence(rng)
        q = f"Answer based on context:\n\n{s}\n\nHow many legs are mentioned?"
        return {"id": f"flan.{i}", "question": q, "response": "Some."}
    if kind == 4:  # cot_gsm8k
        wp = word_problem(rng)
        q = f"{wp.question} Let's think step by step."
        return {"id": f"cot.{i}", "question": q, "response": f"{wp.steps} The answer: {wp.answer}."}
    qa = make_qa(rng, "legs")  # NIv2 task229 (definition in the system prompt)
    return {"id": f"niv.{i}", "system_prompt": "In this task you answer a science question from the "
            "ARC hard set.", "question": qa.question, "response": qa.answer}


def openorca_with_tasks(n: int, seed: int, table8_share: float = 0.1) -> list[tuple[dict, str]]:
    """(row, planted Table 8 task or "") pairs; about ``table8_share`` of rows are Table 8 tasks."""
    rng, world, out = random.Random(seed), facts(), []
    prefixes = ["flan", "niv", "cot", "t0"]
    for i in range(n):
        task = ""
        if rng.random() < table8_share:
            kind = rng.randrange(len(TABLE8_PLANTED))
            row, task = _table8_row(rng, i, kind), TABLE8_PLANTED[kind]
            row.setdefault("system_prompt", rng.choice(ORCA_SYSTEM))
        else:
            qa = make_qa(rng, rng.choice(FAMILIES), world)
            row = {"id": f"{rng.choice(prefixes)}.{i}", "system_prompt": rng.choice(ORCA_SYSTEM),
                   "question": qa.question, "response": qa.answer}
        out.append(({k: row[k] for k in ("id", "system_prompt", "question", "response")}, task))
    return out


def openorca(n: int, seed: int) -> list[dict]:
    """id / system_prompt / question / response (Open-Orca/OpenOrca schema)."""
    return [row for row, _ in openorca_with_tasks(n, seed)]


MATH_TYPES = ["MATH_Rephrased", "MATH_AnsAug", "MATH_SV", "MATH_FOBAR"]
GSM_TYPES = ["GSM_Rephrased", "GSM_AnsAug", "GSM_SV", "GSM_FOBAR"]


def metamathqa(n: int, seed: int, problem=word_problem) -> list[dict]:
    """query / response / type / original_question; half MATH_* origin, half GSM_*."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        wp = problem(rng)
        kind = rng.choice(MATH_TYPES + GSM_TYPES)
        query = wp.rephrased if kind.endswith("Rephrased") else wp.question
        rows.append({"query": query, "response": f"{wp.steps}\nThe answer is: {wp.answer}",
                     "type": kind, "original_question": wp.question})
    return rows


def pretraining_corpus(n: int, seed: int) -> list[dict]:
    """``text`` documents of a few sentences each (the fineweb-edu ``text`` column)."""
    rng, world = random.Random(seed), facts()
    return [{"text": " ".join(story_sentence(rng, world) for _ in range(rng.randint(3, 8))),
             "id": f"tiny-{i}"} for i in range(n)]


def worksheet(rng: random.Random, problem=word_problem) -> str:
    """A page of 4-6 solved word problems, each rendered as lm-eval renders a few-shot GSM8K doc
    (``Question: <q>``, a new line, ``Answer: <steps>``, a new line, ``#### <n>``), a blank line
    between, as exercise pages with answer keys are on the web: 138-220 tiny tokens, the length
    of the leaderboard's 5-shot GSM8K prompt."""
    return "\n\n".join(gsm8k_doc(problem(rng)) for _ in range(rng.randint(4, 6)))


def gsm8k_doc(wp) -> str:
    """One solved problem as lm-eval renders a few-shot GSM8K doc."""
    return f"Question: {wp.question}\nAnswer: {gsm8k_answer(wp)}"


def worksheets(n: int, seed: int) -> list[dict]:
    """``text`` documents that are worksheet pages. Not in the default CPT corpus (nor in the
    tokenizer's texts): experiments/tiny_gsm8k.py pretrains on them
    (``data.sources.cpt_corpus.tiny=worksheets``) to measure what GSM8K needs at tiny scale."""
    rng = random.Random(seed)
    return [{"text": worksheet(rng), "id": f"tiny-worksheet-{i}"} for i in range(n)]


def legs_worksheets(n: int, seed: int) -> list[dict]:
    """Worksheet pages of the two-creature legs problems (``world.legs_problem``); for
    experiments/tiny_gsm8k.py only, like ``worksheets``."""
    rng = random.Random(seed)
    return [{"text": worksheet(rng, legs_problem), "id": f"tiny-legs-worksheet-{i}"}
            for i in range(n)]


def legs_metamathqa(n: int, seed: int) -> list[dict]:
    """MetaMathQA rows of the legs problems (experiments/tiny_gsm8k.py: SFT v3 with them as its
    Synth. Math-Instruct)."""
    return metamathqa(n, seed, legs_problem)


def legs_fewshot_metamathqa(n: int, seed: int) -> list[dict]:
    """MetaMathQA rows (MATH_FOBAR, kept by the MATH-only filter) whose query holds 0-4 solved legs
    problems in GSM8K's Question/Answer layout before the asked one, and whose response ends in
    `#### n`: experiments/tiny_gsm8k.py measures that such rows keep a base's plain 5-shot GSM8K
    answers through chat-template SFT, which single questions do not."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        solved = [legs_problem(rng) for _ in range(rng.randint(0, 4))]
        wp = legs_problem(rng)
        query = "".join(gsm8k_doc(s) + "\n\n" for s in solved)
        rows.append({"query": query + f"Question: {wp.question}\nAnswer:",
                     "response": gsm8k_answer(wp), "type": "MATH_FOBAR",
                     "original_question": wp.question})
    return rows
