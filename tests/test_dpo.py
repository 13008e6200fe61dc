"""The DPO objective: hand-computed loss, equality with TRL, prompt invariance, and a precomputed
reference equal to a live one (losses and gradients)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from solar.data.encode import IGNORE
from solar.data.pairs import collate_pairs, encode_pair
from solar.data.tiny.tokenizer import tiny_tokenizer
from solar.modeling import load_model
from solar.objectives.dpo import DPOModule, preference_loss
from solar.objectives.reference import sequence_logps

ARCH = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, bos_token_id=1, eos_token_id=2, pad_token_id=3)
PAIRS = [
    ([{"role": "user", "content": "What color is the zorp?"}], "The zorp is red.",
     "The zorp is blue."),
    ([{"role": "system", "content": "Be exact."}, {"role": "user", "content": "What is 2 plus 3?"}],
     "2 plus 3 is 5.", "2 plus 3 is 6 or maybe 7."),
    ([{"role": "user", "content": "Spell the word cat backwards."}], "t a c", "c a t"),
]


@pytest.fixture(scope="module")
def tok(cache_dir):
    return tiny_tokenizer(cache_dir)


@pytest.fixture(scope="module")
def batch(tok):
    rows = [{**encode_pair(p, c, r, tok, 128), "index": i} for i, (p, c, r) in enumerate(PAIRS)]
    return collate_pairs(rows, tok.pad_token_id), rows


def tiny(seed, tok):
    return load_model(None, architecture=ARCH, vocab_size=len(tok), seed=seed)


def hand_logps(model, ids: list[int], labels: list[int]) -> float:
    """Sum of log p(token) over the targets, one sequence at a time, no padding, float64."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[t - 1, labels[t]]) for t in range(1, len(ids)) if labels[t] != IGNORE)


def test_loss_equals_hand_computation(tok, batch):
    collated, rows = batch
    policy, ref = tiny(0, tok), tiny(1, tok)
    with torch.no_grad():
        pi, n = sequence_logps(policy, collated)
        rf, _ = sequence_logps(ref, collated)
    beta, eps = 0.1, 0.2
    for k, row in enumerate(rows):
        pc, pr = (hand_logps(policy, row[f"{s}_ids"], row[f"{s}_labels"]) for s in
                  ("chosen", "rejected"))
        rc, rr = (hand_logps(ref, row[f"{s}_ids"], row[f"{s}_labels"]) for s in
                  ("chosen", "rejected"))
        assert float(pi[k]) == pytest.approx(pc, abs=1e-4)
        assert float(pi[k + 3]) == pytest.approx(pr, abs=1e-4)
        z = beta * ((pc - rc) - (pr - rr))
        sig = lambda x: 1 / (1 + math.exp(-x))
        args = (pi[k:k + 1], pi[k + 3:k + 4], rf[k:k + 1], rf[k + 3:k + 4])
        assert float(preference_loss(*args, beta=beta)) == pytest.approx(
            -math.log(sig(z)), abs=1e-5)
        assert float(preference_loss(*args, beta=beta, label_smoothing=eps)) == pytest.approx(
            -(1 - eps) * math.log(sig(z)) - eps * math.log(sig(-z)), abs=1e-5)
        lc, lr = sum(x != IGNORE for x in row["chosen_labels"]), \
            sum(x != IGNORE for x in row["rejected_labels"])
        assert int(n[k]) == lc and int(n[k + 3]) == lr
        ipo = ((pc - rc) / lc - (pr - rr) / lr - 1 / (2 * beta)) ** 2
        assert float(preference_loss(*args, beta=beta, loss_type="ipo", len_c=n[k:k + 1],
                                     len_r=n[k + 3:k + 4])) == pytest.approx(ipo, rel=1e-5)


def test_prompt_tokens_do_not_move_the_loss(tok, batch):
    """Scrambling every logit that predicts a prompt token leaves the loss unchanged."""
    collated, _rows = batch
    policy, ref = tiny(0, tok), tiny(1, tok)
    first_target = [next(i for i, x in enumerate(r) if x != IGNORE) for r in
                    collated["labels"].tolist()]

    class FullLogits(torch.nn.Module):  # no get_output_embeddings: the full-logits path
        def __init__(self, model, scramble):
            super().__init__()
            self.model, self.scramble = model, scramble

        def forward(self, **kwargs):
            out = self.model(**kwargs)
            for row, t in enumerate(first_target if self.scramble else []):
                # logits at position p predict token p + 1: these predict prompt tokens
                out.logits[row, :t - 1] = torch.randn_like(out.logits[row, :t - 1]) * 50
            return out

    with torch.no_grad():
        rc, rr = sequence_logps(ref, collated)[0].chunk(2)
        a = preference_loss(*sequence_logps(FullLogits(policy, False), collated)[0].chunk(2),
                            rc, rr, beta=0.1)
        b = preference_loss(*sequence_logps(FullLogits(policy, True), collated)[0].chunk(2),
                            rc, rr, beta=0.1)
        fast = preference_loss(*sequence_logps(policy, collated)[0].chunk(2), rc, rr, beta=0.1)
    assert torch.equal(a, b)
    assert torch.allclose(a, fast, atol=1e-6)  # the target-only LM head computes the same loss


def module_with(reference: str, tok) -> DPOModule:
    """The policy of tiny(0, tok) in a DPO module with the given reference mode."""
    return DPOModule(architecture=ARCH, vocab_size=len(tok), init_seed=0, beta=0.1,
                     reference=reference)


def test_precomputed_and_live_reference_give_identical_losses_and_gradients(tok, batch):
    from solar.objectives.reference import compute_logps
    collated, rows = batch
    ref = tiny(1, tok)
    live, pre = module_with("live", tok), module_with("precomputed", tok)
    live.__dict__["_live_reference"] = ref.eval()
    import datasets
    table = compute_logps(ref, datasets.Dataset.from_list(rows), lambda r: collate_pairs(r, tok.pad_token_id), 2,
                          torch.device("cpu"))
    pre.ref_logps = {"train": table}
    losses, grads = [], []
    for m in (live, pre):
        terms = m.pair_terms(collated, "train")
        terms["loss"].mean().backward()
        losses.append(terms["loss"].detach())
        grads.append(torch.cat([p.grad.flatten() for p in m.model.parameters()]))
    assert torch.allclose(losses[0], losses[1], atol=1e-6, rtol=0)
    assert torch.allclose(grads[0], grads[1], atol=1e-7, rtol=1e-5)
    assert float(grads[0].abs().sum()) > 0


def test_equals_trl_dpo_loss(tok, batch, tmp_path):
    """TRL's DPOTrainer loss on the same models and the same batch, within 1e-5."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    collated, _ = batch
    policy, ref = tiny(0, tok), tiny(1, tok)
    with torch.no_grad():
        pi_c, pi_r = sequence_logps(policy, collated)[0].chunk(2)
        ref_c, ref_r = sequence_logps(ref, collated)[0].chunk(2)
        n_c, n_r = sequence_logps(policy, collated)[1].chunk(2)
    train = datasets.Dataset.from_list([{"prompt": p, "chosen": [{"role": "assistant",
                                         "content": c}], "rejected": [{"role": "assistant",
                                                                       "content": r}]}
                                        for p, c, r in PAIRS])
    inputs = {"input_ids": collated["input_ids"], "attention_mask": collated["attention_mask"],
              "completion_mask": (collated["labels"] != IGNORE).long()}
    for loss_type in ("sigmoid", "ipo"):
        args = trl.DPOConfig(output_dir=str(tmp_path / loss_type), beta=0.1, loss_type=loss_type,
                             report_to="none", use_cpu=True, gradient_checkpointing=False,
                             per_device_train_batch_size=3, max_length=128,
                             bf16=False)  # TRL's default bf16 autocasts its reference, even on CPU
        trainer = trl.DPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(ref),
                                 args=args, train_dataset=train, processing_class=tok)
        trainer.model.train()
        with torch.no_grad():
            theirs = trainer._compute_loss(trainer.model, dict(inputs), False)
        ours = preference_loss(pi_c, pi_r, ref_c, ref_r, beta=0.1, loss_type=loss_type,
                               len_c=n_c, len_r=n_r).mean()
        assert float(ours) == pytest.approx(float(theirs), abs=1e-5), loss_type
        for name in ("rewards/chosen", "rewards/accuracies", "logps/rejected"):
            assert name in trainer._metrics["train"]  # the metric names solar logs under train/


def test_a_non_finite_loss_fails_loudly(tok, batch):
    collated, rows = batch
    module = module_with("precomputed", tok)
    table = torch.zeros(len(rows), 2)
    table[1, 0] = float("nan")  # a corrupt reference entry
    module.ref_logps = {"train": table}

    class Trainer:  # the two attributes training_step reads besides the optimizer
        world_size, global_step = 1, 0
    module.optimizers = lambda: None
    module.lr_schedulers = lambda: None
    module.all_gather = lambda t: t
    module._trainer = Trainer()
    with pytest.raises(FloatingPointError, match=r"not finite.*pairs \[0, 1, 2\]"):
        module.training_step([collated], 0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        DPOModule(architecture=ARCH, vocab_size=len(tok), beta=0.0)
