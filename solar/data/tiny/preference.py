"""Generators of the tiny world's preference sources, in the exact hub schema of the real ones.

Intel/orca_dpo_pairs (system / question / chosen / rejected), allenai/ultrafeedback_binarized_cleaned
(prompt, message-list chosen / rejected, scores), and hendrycks/competition_math (problem / level /
type / solution), whose rows are the *original* solutions of the tiny MetaMathQA rows of MATH origin,
so Synth. Math-Alignment can be built by the same join as at paper scale.

Preferences are learnable by a tiny model: the chosen answer is the world's true fact or the correct
sum, the rejected one a plausible wrong answer (``QA.wrong``) or, for the math pairs, the terse
original solution instead of the worked, rephrased one.
"""

from __future__ import annotations

import random

from solar.data.tiny.sources import ORCA_SYSTEM, legs_fewshot_metamathqa, metamathqa
from solar.data.tiny.world import FAMILIES, facts, make_qa

UF_SOURCES = ["evol_instruct", "false_qa", "flan_v2_niv2", "sharegpt", "ultrachat"]


def orca_dpo_pairs(n: int, seed: int) -> list[dict]:
    """system / question / chosen / rejected: chosen is right, rejected wrong."""
    rng, world = random.Random(seed), facts()
    rows = []
    for _ in range(n):
        qa = make_qa(rng, rng.choice(FAMILIES), world)
        rows.append({"system": rng.choice(ORCA_SYSTEM), "question": qa.question,
                     "chosen": qa.answer, "rejected": qa.wrong})
    return rows


def _msg(role: str, content: str) -> dict:
    return {"content": content, "role": role}


def ultrafeedback_clean(n: int, seed: int) -> list[dict]:
    """prompt / prompt_id / chosen / rejected / messages / score_chosen / score_rejected / source.

    A quarter of the conversations have an earlier exchange, so the Zephyr split (prompt = every
    turn but the last) is exercised on multi-turn rows, as on the hub.
    """
    rng, world = random.Random(seed), facts()
    rows = []
    for i in range(n):
        qa = make_qa(rng, rng.choice(FAMILIES), world)
        history = []
        if rng.random() < 0.25:
            first = make_qa(rng, rng.choice(FAMILIES), world)
            history = [_msg("user", first.question), _msg("assistant", first.answer)]
        chosen = history + [_msg("user", qa.question), _msg("assistant", qa.answer)]
        rejected = history + [_msg("user", qa.question), _msg("assistant", qa.wrong)]
        score_c = float(rng.choice([8, 9, 10]))
        rows.append({"prompt": history[0]["content"] if history else qa.question,
                     "prompt_id": f"{seed:04d}{i:08d}", "chosen": chosen, "rejected": rejected,
                     "messages": chosen, "score_chosen": score_c,
                     "score_rejected": score_c - rng.choice([3.0, 4.0, 5.0]),
                     "source": rng.choice(UF_SOURCES)})
    return rows


def original_solution(question: str, answer: int) -> str:
    """The terse MATH-style original solution of a tiny word problem (boxed final answer)."""
    return f"The result is $\\boxed{{{answer}}}$."


def metamathqa_with_originals(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """The tiny MetaMathQA rows and the competition_math rows holding their original solutions:
    one per distinct original question of MATH origin, its answer read off the MetaMathQA row."""
    rows, level_rng = metamathqa(n, seed), random.Random(seed + 1)
    return rows, _originals(rows, "The answer is: ",
                            lambda: f"Level {level_rng.randint(1, 5)}")


def _originals(rows: list[dict], answer_marker: str, level) -> list[dict]:
    """competition_math rows for the MATH-origin ``rows``: one per distinct original question, its
    answer read after the last ``answer_marker`` of the row's response."""
    originals, seen = [], set()
    for row in rows:
        question = row["original_question"]
        if row["type"].startswith("MATH_") and question not in seen:
            seen.add(question)
            answer = int(row["response"].rsplit(answer_marker, 1)[1])
            originals.append({"problem": question, "level": level(), "type": "Prealgebra",
                              "solution": original_solution(question, answer)})
    return originals


def competition_math(n: int, seed: int) -> list[dict]:
    """problem / level / type / solution for the MATH-origin rows of ``metamathqa(n, seed)``."""
    return metamathqa_with_originals(n, seed)[1]


def legs_competition_math(n: int, seed: int) -> list[dict]:
    """The terse MATH-style original solution of every legs problem asked in
    ``sources.legs_fewshot_metamathqa(n, seed)``: with those rows as Synth. Math-Alignment's
    questions, chosen = the worked `#### n` answer, rejected = the boxed one-liner
    (experiments/tiny_gsm8k.py, finding (f) on the legs GSM8K)."""
    return _originals(legs_fewshot_metamathqa(n, seed), "#### ", lambda: "Level 1")
