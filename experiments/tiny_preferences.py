"""Which of the tiny world's facts a model knows, per task family: how often it gives the true
answer a higher log-prob than the plausible wrong one the world pairs it with, and by how much.

    python experiments/tiny_preferences.py RUN_OR_MODEL_DIR... [--items 40] [--seed 777]

e.g. `python experiments/tiny_preferences.py runs/tiny_fidelity/seed42/tiny/{cpt,sft_v3,dpo_v1}`.
A run directory is read through its `model/`. Items are drawn with the world's own `make_qa`
(every family: sums, capitals, reversed spelling, creature colors, homes and legs), the pairs the
tiny preference sets and benchmarks are built from. Each answer is scored as the summed log-prob of
its tokens after the question, in SOLAR's chat template (how SFT and DPO train) and in the plain
`Q: ...\nA:` layout of the benchmarks' prompts. It shows what H6 cannot: which facts a stage
taught, and whether DPO moves what the model gets wrong or only widens margins it already has.
About 10 s per model on one core.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from solar.data.encode import IGNORE
from solar.data.tiny.world import FAMILIES, facts, make_qa
from solar.objectives.reference import sequence_logps


def answer_logprob(model, tokenizer, prompt: str, answer: str) -> float:
    """Summed log-prob of ``answer``'s tokens following ``prompt`` (tokenized apart: the
    boundary is exact), by the objectives' own ``sequence_logps``."""
    p = tokenizer(prompt, add_special_tokens=False).input_ids
    a = tokenizer(answer, add_special_tokens=False).input_ids
    ids = torch.tensor([p + a])
    batch = {"input_ids": ids, "labels": torch.tensor([[IGNORE] * len(p) + a]),
             "attention_mask": torch.ones_like(ids), "position_ids": torch.arange(ids.shape[1])[None]}
    with torch.no_grad():
        return float(sequence_logps(model, batch)[0][0])


def family_scores(path: Path, items: list) -> dict[tuple[str, str], tuple[float, float]]:
    """(family, layout) -> (share of items whose true answer wins, mean margin in nats)."""
    model_dir = path / "model" if (path / "model" / "config.json").is_file() else path
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    margins: dict[tuple[str, str], list[float]] = {}
    for qa in items:
        chat = tokenizer.apply_chat_template([{"role": "user", "content": qa.question}],
                                             tokenize=False, add_generation_prompt=True)
        for layout, prompt, sep in (("chat", chat, ""), ("plain", f"Q: {qa.question}\nA:", " ")):
            m = answer_logprob(model, tokenizer, prompt, sep + qa.answer) - \
                answer_logprob(model, tokenizer, prompt, sep + qa.wrong)
            margins.setdefault((qa.family, layout), []).append(m)
    return {k: (sum(m > 0 for m in v) / len(v), sum(v) / len(v)) for k, v in margins.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="run directories or model directories")
    ap.add_argument("--items", type=int, default=40, help="items per family")
    ap.add_argument("--seed", type=int, default=777)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng, world = random.Random(args.seed), facts()
    items = [make_qa(rng, family, world) for family in FAMILIES for _ in range(args.items)]
    scores = {path: family_scores(path, items) for path in args.models}
    for layout in ("chat", "plain"):
        print(f"\n{layout} layout: share of items whose true answer wins (mean margin, nats)\n")
        print("| model | " + " | ".join(FAMILIES) + " |")
        print("|---|" + "---|" * len(FAMILIES))
        for path, s in scores.items():
            cells = [f"{s[(f, layout)][0]:.2f} ({s[(f, layout)][1]:+.1f})" for f in FAMILIES]
            print(f"| {path} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
