"""SFT tokens/s: solar vs TRL's SFTTrainer on the same tiny model, data and rows per step.

    python benchmarks/sft_throughput.py [--steps 30] [--max-length 512] [--batch 8]

Both train the same seeded tiny Llama (hidden 256, 4 layers) on the same tiny-world SFT v3 mixture
with the loss on responses only, `--batch` rows per optimizer step, fp32 on CPU. Throughput counts
non-pad tokens per second over the steps after a warm-up; packing efficiency is the share of
non-pad tokens in the rows each trainer feeds the model. TRL runs in its best setting here
(PEERS.md: padded, gradient checkpointing off; fused AdamW and fp32 like solar: SFTConfig's bf16
default is emulated on a CPU without AMX and ran ~13x slower), padded in micro-batches of `--batch`
rows accumulated to about solar's non-pad tokens per optimizer step, and with packing=True.
solar runs as solar.train does on CPU: packed rows, each micro-batch one unpadded row, causal sdpa
per example (no dense block mask), LM head on target positions only. Prints ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from datasets import Dataset

from solar.data.datamodule import SolarDataModule
from solar.data.tiny.tokenizer import tiny_tokenizer
from solar.modeling import load_model
from solar.objectives.sft import SFTModule

ARCH = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, bos_token_id=1, eos_token_id=2, pad_token_id=3)
SOURCES = {
    "alpaca_gpt4": {"schema": "alpaca_gpt4", "hub_id": "x", "split": "train", "seed": 0},
    "openorca": {"schema": "openorca", "hub_id": "x", "split": "train", "seed": 0},
    "synth_math_instruct": {"schema": "metamathqa", "hub_id": "x", "split": "train", "seed": 0,
                            "types": ["MATH_Rephrased", "MATH_AnsAug", "MATH_SV", "MATH_FOBAR"]},
}


def solar_run(tok, cache, args) -> tuple[float, float]:
    # as solar.train feeds it on CPU: the micro-batch as one unpadded row, sdpa per example
    dm = SolarDataModule(SOURCES, tok, world="tiny", cache_dir=cache, max_length=args.max_length,
                         micro_batch_size=args.batch, grad_accum=1, val_fraction=0.0,
                         padding_free=True)
    dm.setup()
    module = SFTModule(architecture=ARCH, vocab_size=len(tok), lr=1e-3, max_steps=args.steps)
    opt = module.configure_optimizers()["optimizer"]
    from solar.objectives.base import token_loss_sum
    loader, tokens, start = iter(dm.train_dataloader()), 0, None
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            tokens, start = 0, time.perf_counter()
        (batch,) = next(loader)
        loss_sum, n = token_loss_sum(module.model, batch)
        (loss_sum / n).backward()
        torch.nn.utils.clip_grad_norm_(module.model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += batch["n_tokens"]
    return tokens / (time.perf_counter() - start), dm.report["train"]["packing_efficiency"]


def trl_run(tok, cache, args, packing: bool) -> tuple[float, float]:
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    dm = SolarDataModule(SOURCES, tok, world="tiny", cache_dir=cache, max_length=args.max_length,
                         micro_batch_size=args.batch, grad_accum=1, val_fraction=0.0,
                         packing=False)
    dm.setup()
    # the same examples as prompt/completion text (TRL tokenizes and masks the prompt itself)
    prompts, completions = [], []
    for r in dm.train_rows:
        cut = next(i for i, lab in enumerate(r["labels"]) if lab != -100)
        prompts.append(tok.decode(r["input_ids"][1:cut]))
        completions.append(tok.decode(r["input_ids"][cut:]))
    data = Dataset.from_dict({"prompt": prompts, "completion": completions})
    # same tokens per optimizer step as solar: padded TRL gets as many rows as fill 8 packed rows
    mean_len = sum(len(r) for r in dm.train_rows["input_ids"]) / len(dm.train_rows)
    # in micro-batches of --batch rows (each padded to its longest row only), accumulated
    accum = 1 if packing else max(1, round(args.max_length / mean_len * 0.95))

    class Clock(TrainerCallback):
        def __init__(self):
            self.tokens, self.start, self.step = 0, None, 0

        def on_step_begin(self, a, state, control, **kw):
            if self.step == args.warmup:
                self.tokens, self.start = 0, time.perf_counter()
            self.step += 1

    clock = Clock()
    model = load_model(None, architecture=ARCH, vocab_size=len(tok), seed=0)
    with tempfile.TemporaryDirectory() as out:
        cfg = SFTConfig(output_dir=out, per_device_train_batch_size=args.batch,
                        gradient_accumulation_steps=accum, max_steps=args.steps
                        + args.warmup, learning_rate=1e-3, max_length=args.max_length,
                        packing=packing, completion_only_loss=True, gradient_checkpointing=False,
                        optim="adamw_torch_fused",  # as solar's optimizer (fused AdamW)
                        # fp32 as solar: SFTConfig defaults to bf16, which this CPU (no AMX)
                        # emulates in slow generic GEMMs (profiled: ~13x slower per micro-batch)
                        bf16=False, fp16=False,
                        report_to=[], use_cpu=True, logging_steps=1000, save_strategy="no",
                        dataloader_num_workers=0, seed=0)
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok,
                             callbacks=[clock])
        counted = {"tokens": 0, "slots": 0}
        original = trainer.compute_loss

        def compute_loss(model, inputs, *a, **kw):
            mask = inputs.get("attention_mask")
            ids = inputs["input_ids"]
            real = int(mask.sum()) if mask is not None else int((ids != tok.pad_token_id).sum())
            if clock.step > args.warmup:
                clock.tokens += real
            counted["tokens"] += real
            counted["slots"] += ids.numel()
            return original(model, inputs, *a, **kw)

        trainer.compute_loss = compute_loss
        trainer.train()
    return clock.tokens / (time.perf_counter() - clock.start), counted["tokens"] / counted["slots"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as cache:
        tok = tiny_tokenizer(cache)
        results = {"solar (packed)": solar_run(tok, cache, args),
                   "trl (padded)": trl_run(tok, cache, args, packing=False),
                   "trl (packing=True)": trl_run(tok, cache, args, packing=True)}
    best_trl = max(v[0] for k, v in results.items() if k.startswith("trl"))
    print(f"\n{'trainer':<22}{'non-pad tok/s':>14}{'packing eff.':>14}")
    for name, (tps, eff) in results.items():
        print(f"{name:<22}{tps:>14,.0f}{eff:>14.2%}")
    print(f"\nsolar / best TRL throughput: {results['solar (packed)'][0] / best_trl:.2f}x "
          f"(target >= 1.5x)")


if __name__ == "__main__":
    main()
