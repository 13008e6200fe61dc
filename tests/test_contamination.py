"""The Table 9 test flags items a model memorised and not items it never saw."""

from __future__ import annotations

import copy
import random

import torch

from solar.data.tiny.benchmarks import materialize_benchmarks
from solar.data.tiny.world import make_qa
from solar.eval.contamination import benchmark_items, contamination, format_table9
from solar.modeling import load_model, load_tokenizer

ARCH = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=256)


def _train(model, tok, texts, steps, lr, seed=0):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = tok(rng.sample(texts, min(16, len(texts))), return_tensors="pt", padding=True,
                    padding_side="right")
        labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_memorised_items_flagged_unseen_not(cache_dir):
    torch.manual_seed(0)
    tok = load_tokenizer(None, cache_dir)
    items = benchmark_items("arc_challenge", materialize_benchmarks(cache_dir), n=10, seed=0)
    seen, unseen = items[:5], items[5:]
    # reference: a model of the benchmark's kind of text (not of the items themselves)
    rng = random.Random(1)
    corpus = [f"{q.question} {q.answer}" for q in
              (make_qa(rng, rng.choice(["color", "home", "legs"])) for _ in range(400))]
    reference = _train(load_model(None, architecture=ARCH, vocab_size=len(tok)), tok, corpus,
                       120, 3e-3)
    # target: the reference fine-tuned until it has memorised the `seen` items
    target = _train(copy.deepcopy(reference), tok, seen, 80, 3e-3)
    hit = contamination(target, tok, reference, tok, seen, k=20)
    miss = contamination(target, tok, reference, tok, unseen, k=20)
    assert hit["result"] == 1.0 and max(hit["scores"]) < 0.1, hit
    assert miss["result"] <= 0.4, miss
    table = format_table9("t", {"arc_challenge": hit, "gsm8k": miss})
    assert "1.00*" in table and "GSM8K" in table
