"""The reference-neighbour contamination test of SOLAR's Table 9 (the leaderboard's "result < 0.1, %").

For each of N shuffled benchmark items, x = question + " " + gold answer. The REFERENCE model
samples K continuations of the first 40% of x's words (max_new_tokens = the remaining word count);
score(x) = share of those neighbours on which the TARGET's mean token loss is lower than on x.
A model that saw x in training has an unusually low loss on x, so almost no neighbour beats it:
score(x) < 0.1. The reported number is the share of items with score < 0.1; above 0.85 the
target was likely trained on the benchmark. Text-level neighbours let the two models have
different tokenizers.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from solar.eval.tasks import BENCHMARKS, read_rows

TABLE9_ORDER = ["arc_challenge", "mmlu", "truthfulqa_mc2", "gsm8k", "hellaswag", "winogrande"]


def _text(name: str, row: dict) -> str:
    """x = question + gold answer, in each benchmark's hub schema."""
    if name == "arc_challenge":
        return f"{row['question']} {row['choices']['text'][row['choices']['label'].index(row['answerKey'])]}"
    if name == "mmlu":
        return f"{row['question']} {row['choices'][int(row['answer'])]}"
    if name == "truthfulqa_mc2":
        mc1 = row["mc1_targets"]
        return f"{row['question']} {mc1['choices'][mc1['labels'].index(1)]}"
    if name == "gsm8k":
        return f"{row['question']} {row['answer']}"
    if name == "hellaswag":
        return f"{row['ctx']} {row['endings'][int(row['label'])]}"
    if name == "winogrande":  # the sentence with its blank filled by the right option
        return row["sentence"].replace("_", row[f"option{row['answer']}"], 1)
    raise KeyError(f"unknown benchmark '{name}' (known: {TABLE9_ORDER})")


def benchmark_items(name: str, data_dir: str | Path, n: int = 100, seed: int = 0) -> list[str]:
    """N items of benchmark ``name``'s evaluation split, shuffled with ``seed``."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark '{name}' (known: {TABLE9_ORDER})")
    bench = BENCHMARKS[name]
    columns = ("ctx", "endings", "label") if name == "hellaswag" else bench.columns
    columns = ("question", "mc1_targets") if name == "truthfulqa_mc2" else columns
    rows = read_rows(Path(data_dir) / bench.directory / f"{bench.eval_split}.jsonl", columns)
    random.Random(seed).shuffle(rows)
    return [_text(name, r) for r in rows[:n]]


@torch.no_grad()
def mean_token_losses(model, tokenizer, texts: list[str], batch_size: int = 32) -> torch.Tensor:
    """Each text's mean next-token loss under ``model`` (padding masked out)."""
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                        padding_side="right")
        enc = enc.to(model.device)
        logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), enc.input_ids[:, 1:], reduction="none")
        mask = enc.attention_mask[:, 1:].float()
        out.append((nll * mask).sum(1) / mask.sum(1).clamp(min=1))
    return torch.cat(out).cpu()


@torch.no_grad()
def neighbours(reference, tokenizer, text: str, k: int, prefix_fraction: float = 0.4,
               seed: int = 0) -> list[str]:
    """K sampled continuations by ``reference`` of the first ``prefix_fraction`` of the words."""
    words = text.split()
    cut = max(1, int(len(words) * prefix_fraction))
    prefix = " ".join(words[:cut])
    enc = tokenizer(prefix, return_tensors="pt").to(reference.device)
    torch.manual_seed(seed)
    gen = reference.generate(**enc, do_sample=True, num_return_sequences=k,
                             max_new_tokens=max(1, len(words) - cut),
                             pad_token_id=tokenizer.pad_token_id)
    cont = tokenizer.batch_decode(gen[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
    return [prefix + c if c[:1].isspace() else f"{prefix} {c}" for c in cont]


def contamination(target, target_tok, reference, reference_tok, texts: list[str], *, k: int = 100,
                  prefix_fraction: float = 0.4, seed: int = 0, threshold: float = 0.1,
                  batch_size: int = 32) -> dict:
    """score(x) per item and the share of items with score < ``threshold``."""
    scores = []
    for i, x in enumerate(texts):
        hood = neighbours(reference, reference_tok, x, k, prefix_fraction, seed + i)
        losses = mean_token_losses(target, target_tok, [x] + hood, batch_size)
        scores.append(float((losses[1:] < losses[0]).float().mean()))
    return {"scores": scores, "result": sum(s < threshold for s in scores) / max(1, len(scores)),
            "n": len(texts), "k": k}


def format_table9(model: str, results: dict[str, dict], trained_on: float = 0.85) -> str:
    """Table 9 layout: one row, 'result < 0.1' per benchmark; '*' marks > ``trained_on``."""
    names = [n for n in TABLE9_ORDER if n in results]
    head = ["Model"] + [BENCHMARKS[n].title for n in names]
    cells = [model] + [f"{results[n]['result']:.2f}" + ("*" if results[n]["result"] > trained_on
                                                          else "") for n in names]
    widths = [max(len(h), len(c)) for h, c in zip(head, cells)]
    line = lambda xs: " | ".join(x.rjust(w) for x, w in zip(xs, widths))
    note = f"result < 0.1 share of items; * > {trained_on}: likely trained on the benchmark"
    return "\n".join([line(head), "-+-".join("-" * w for w in widths), line(cells), note])
