"""The GPU path: packed rows through flash-attn 2 varlen in bf16 (skipped without CUDA).

transformers detects packed rows from the position-id restarts when no attention mask is given and
calls flash-attn's varlen kernel with one sequence per example; solar feeds each micro-batch as ONE
unpadded row (padding_free). So a packed row's logits must equal each example's own logits, within
bf16 tolerance (atol 0.05 / rtol 0.02 on logits of magnitude ~1-5), and no example may see another.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from solar.data.datamodule import collate
from solar.data.encode import encode_chat
from solar.data.packing import concat_row
from solar.data.tiny.tokenizer import tiny_tokenizer
from solar.modeling import attention_implementation, load_model

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA GPU: the flash-attn varlen path only runs on GPU"),
    pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None,
                       reason="needs flash-attn: pip install -e .[gpu]"),
]


def test_packed_logits_equal_per_example_with_flash_attn_bf16(cache_dir):
    tok = tiny_tokenizer(cache_dir)
    assert attention_implementation("auto", packed=True) == "flash_attention_2"
    model = load_model(None, architecture=dict(hidden_size=256, intermediate_size=688,
                       num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2),
                       vocab_size=len(tok), seed=1, dtype=torch.bfloat16,
                       attn="flash_attention_2").cuda().eval()
    assert model.config._attn_implementation == "flash_attention_2"
    texts = [("What is 2 plus 2?", "2 plus 2 is 4."), ("Spell the word cat backwards.", "t a c"),
             ("Where does the zorp live?", "The zorp lives in Velm.")]
    exs = [encode_chat([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                       tok, 128) for q, a in texts]
    # two packed rows, fed as training feeds them: one unpadded row with position-id restarts
    batch = collate([concat_row(exs[:2]), concat_row(exs[2:])], tok.pad_token_id, packed=True,
                    padding_free=True)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"].cuda(),
                       position_ids=batch["position_ids"].cuda(), use_cache=False).logits[0]
        start = 0
        for ex in exs:
            n = len(ex["input_ids"])
            alone = model(input_ids=torch.tensor([ex["input_ids"]]).cuda(),
                          use_cache=False).logits[0]
            torch.testing.assert_close(packed[start:start + n].float(), alone.float(),
                                       atol=5e-2, rtol=2e-2)
            start += n
        # no attention across examples: changing example 0 leaves example 1's logits unchanged
        ids = batch["input_ids"].clone()
        ids[0, 1:len(exs[0]["input_ids"])] = 5
        other = model(input_ids=ids.cuda(), position_ids=batch["position_ids"].cuda(),
                      use_cache=False).logits[0]
        n0 = len(exs[0]["input_ids"])
        torch.testing.assert_close(other[n0:].float(), packed[n0:].float(), atol=1e-2, rtol=0)
        assert (other[:n0] - packed[:n0]).abs().max() > 0.1  # while example 0's own logits move


def test_fsdp_on_cuda_in_bf16_trains_like_the_unsharded_run(cache_dir, tmp_path):
    """The paper-scale strategy on a GPU (one device, NCCL): SFT v3 at bf16-mixed with flash-attn
    under trainer.strategy=fsdp gives the unsharded run's losses within bf16 round-off, and its
    export (gathered from the shards) is fp32 and reloads."""
    import csv
    import os
    import subprocess
    import sys
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    def run(strategy: str) -> dict[int, float]:
        runs = tmp_path / strategy
        cmd = [sys.executable, "-m", "solar.train", "+ablation=sft_v3", "model.pretrained=null",
               "scale=tiny", f"paths.runs={runs}", "logger=csv", "trainer.max_steps=20",
               "trainer.log_every_n_steps=1", "trainer.accelerator=gpu", "trainer.devices=1",
               "trainer.precision=bf16-mixed", f"trainer.strategy={strategy}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False,
                              cwd=Path(__file__).resolve().parent.parent,
                              env={**os.environ, "WANDB_MODE": "offline"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "attention implementation: flash_attention_2" in proc.stdout + proc.stderr
        with open(runs / "tiny" / "sft_v3" / "metrics" / "metrics.csv") as f:
            return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f)
                    if r.get("train/loss")}

    sharded, plain = run("fsdp"), run("auto")
    assert sorted(sharded) == sorted(plain) and len(plain) == 20
    assert max(abs(sharded[s] - plain[s]) for s in plain) < 0.05
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp" / "tiny" / "sft_v3" / "model")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
