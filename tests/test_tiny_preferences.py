"""experiments/tiny_preferences.py: an answer's summed log-prob after its prompt equals what the
model's own loss says (HF cross-entropy on the answer tokens only), and a run directory is read
through its model/ with one (share, margin) per family and layout."""

from __future__ import annotations

import importlib.util
import random

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from solar.data.tiny.tokenizer import tiny_tokenizer
from solar.data.tiny.world import FAMILIES, facts, make_qa
from solar.runs import CONF_DIR

spec = importlib.util.spec_from_file_location(
    "tiny_preferences", CONF_DIR.parent / "experiments" / "tiny_preferences.py")
prefs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prefs)


def seeded_model(tok) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=4)).eval()


def test_answer_logprob_is_the_models_own_loss_on_the_answer_tokens(cache_dir):
    tok = tiny_tokenizer(cache_dir)
    model = seeded_model(tok)
    prompt, answer = "Q: What color is the zorp?\nA:", " The zorp is red."
    p = tok(prompt, add_special_tokens=False).input_ids
    a = tok(answer, add_special_tokens=False).input_ids
    labels = torch.tensor([[-100] * len(p) + a])
    with torch.no_grad():
        mean_nll = model(torch.tensor([p + a]), labels=labels).loss  # HF shifts the labels itself
    ours = prefs.answer_logprob(model, tok, prompt, answer)
    assert len(a) > 1 and ours < 0
    assert abs(ours - (-float(mean_nll) * len(a))) < 1e-4


def test_family_scores_reads_a_run_dir_and_scores_every_family_in_both_layouts(cache_dir,
                                                                                tmp_path):
    tok = tiny_tokenizer(cache_dir)
    seeded_model(tok).save_pretrained(tmp_path / "run" / "model")
    tok.save_pretrained(tmp_path / "run" / "model")
    rng = random.Random(0)
    items = [make_qa(rng, f, facts()) for f in FAMILIES for _ in range(3)]
    scores = prefs.family_scores(tmp_path / "run", items)
    assert set(scores) == {(f, layout) for f in FAMILIES for layout in ("chat", "plain")}
    assert all(share in (0, 1 / 3, 2 / 3, 1) for share, _ in scores.values())
