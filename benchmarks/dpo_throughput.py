"""DPO pairs/s and peak RSS: solar's DPO objective vs TRL's DPOTrainer, same model, data and batch.

    python benchmarks/dpo_throughput.py [--pairs 1000] [--steps 30] [--batch 8] [--max-length 512]

Both train the same seeded tiny Llama (hidden 256, 4 layers, the tiny tokenizer) with beta 0.1 on
the same tiny-world DPO v2 pairs (UltraFeedback Cleaned + Synth. Math-Alignment), rendered with the
same chat template, ``--batch`` pairs per optimizer step, fp32 on CPU, gradient checkpointing off.
Each trainer runs in its own process (peak RSS is per process). Reported:
- train pairs/s: optimizer steps after a warm-up, the reference already available;
- end-to-end pairs/s: the pairs trained divided by (reference precompute + those steps), so a
  precompute is charged to the run that needs it;
- TRL with a live reference (its default) and with precompute_ref_log_probs=True (its best here,
  PEERS.md). TRL runs with bf16=False: its default bf16 autocasts the reference, even on CPU.
Prints solar's ratios against TRL's best setting (target >= 1.3x train pairs/s).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch

ARCH = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, bos_token_id=1, eos_token_id=2, pad_token_id=3)
SOURCES = {
    "ultrafeedback_clean": {"schema": "ultrafeedback", "hub_id": "x", "split": "train_prefs",
                            "seed": 0},
    "synth_math_alignment": {
        "schema": "synth_math_alignment", "seed": 0,
        "questions": {"schema": "metamathqa", "hub_id": "x", "split": "train", "seed": 0,
                      "types": ["MATH_Rephrased"], "tiny": "synth_math_instruct"},
        "solutions": {"schema": "competition_math", "hub_id": "x", "split": "train", "seed": 0,
                      "tiny": "competition_math"}},
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def capped(n: int) -> dict:
    """The DPO v2 mixture, n pairs in all (half from each source)."""
    return {k: {**v, "max_samples": n // 2} for k, v in SOURCES.items()}


def pairs(cache: str, n: int):
    """The same pairs as canonical records, for TRL (which tokenizes them itself)."""
    import datasets

    from solar.data.preference import prepare_preference_source
    return datasets.concatenate_datasets([prepare_preference_source(k, v, "tiny", cache)[0]
                                          for k, v in capped(n).items()])


def solar_worker(args, cache: str) -> dict:
    import lightning as L

    from solar.data.pairs import PreferenceDataModule
    from solar.data.tiny.tokenizer import tiny_tokenizer
    from solar.objectives.dpo import DPOModule

    tok = tiny_tokenizer(cache)
    dm = PreferenceDataModule(capped(args.pairs), tok, world="tiny", cache_dir=cache,
                              max_length=args.max_length, micro_batch_size=args.batch,
                              grad_accum=1, val_fraction=0.0)
    dm.setup()
    module = DPOModule(architecture=ARCH, vocab_size=len(tok), init_seed=0, lr=1e-4, beta=0.1,
                       max_steps=args.steps + args.warmup, ref_cache_dir=cache,
                       reference_fingerprint="bench", ref_batch_size=args.batch)
    clock = {}

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == args.warmup:
                clock["steady_from"] = time.perf_counter()

    trainer = L.Trainer(max_steps=args.steps + args.warmup, accelerator="cpu", devices=1,
                        precision="32-true", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[Clock()])
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    end = time.perf_counter()
    precompute = module.precompute_seconds
    steady = args.steps * args.batch / (end - clock["steady_from"])
    trained = (args.steps + args.warmup) * args.batch
    return {"train_pairs_s": steady, "precompute_s": precompute,
            "e2e_pairs_s": trained / (end - start), "peak_rss_gb": peak_rss_gb()}


def trl_worker(args, cache: str, precompute: bool) -> dict:
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from solar.data.tiny.tokenizer import tiny_tokenizer
    from solar.modeling import load_model

    tok = tiny_tokenizer(cache)
    records = pairs(cache, args.pairs)
    data = records.map(lambda r: {"chosen": [{"role": "assistant", "content": r["chosen"]}],
                                  "rejected": [{"role": "assistant", "content": r["rejected"]}]})
    clock = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            clock["trained_from"] = time.perf_counter()

        def on_step_begin(self, a, state, control, **kw):
            if state.global_step == args.warmup:
                clock["steady_from"] = time.perf_counter()

    import copy
    model = load_model(None, architecture=ARCH, vocab_size=len(tok), seed=0)
    with tempfile.TemporaryDirectory() as out:
        cfg = DPOConfig(output_dir=out, per_device_train_batch_size=args.batch,
                        max_steps=args.steps + args.warmup, learning_rate=1e-4, beta=0.1,
                        max_length=args.max_length, precompute_ref_log_probs=precompute,
                        precompute_ref_batch_size=args.batch, gradient_checkpointing=False,
                        bf16=False, report_to=[], use_cpu=True, logging_steps=1000,
                        save_strategy="no", dataloader_num_workers=0, seed=0)
        start = time.perf_counter()
        trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=cfg,
                             train_dataset=data, processing_class=tok, callbacks=[Clock()])
        trainer.train()
        end = time.perf_counter()
    trained = (args.steps + args.warmup) * args.batch
    return {"train_pairs_s": args.steps * args.batch / (end - clock["steady_from"]),
            "precompute_s": clock["trained_from"] - start if precompute else 0.0,
            "e2e_pairs_s": trained / (end - start), "peak_rss_gb": peak_rss_gb()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--worker", choices=["solar", "trl", "trl-precompute"])
    p.add_argument("--cache")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.worker:
        result = solar_worker(args, args.cache) if args.worker == "solar" else \
            trl_worker(args, args.cache, precompute=args.worker == "trl-precompute")
        print("RESULT " + json.dumps(result))
        return
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        for worker in ("solar", "trl", "trl-precompute"):
            cmd = [sys.executable, __file__, "--worker", worker, "--cache", cache,
                   *[f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                     if k not in ("worker", "cache")]]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{worker} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
            results[worker] = json.loads(line[7:])
            print(worker, results[worker], flush=True)
    print(f"\n{'trainer':<18}{'train pairs/s':>15}{'precompute s':>14}{'e2e pairs/s':>13}"
          f"{'peak RSS GB':>13}")
    for name, r in results.items():
        print(f"{name:<18}{r['train_pairs_s']:>15.2f}{r['precompute_s']:>14.1f}"
              f"{r['e2e_pairs_s']:>13.2f}{r['peak_rss_gb']:>13.2f}")
    best = max(("trl", "trl-precompute"), key=lambda k: results[k]["train_pairs_s"])
    s, t = results["solar"], results[best]
    print(f"\nsolar / TRL ({best}): train pairs/s {s['train_pairs_s'] / t['train_pairs_s']:.2f}x "
          f"(target >= 1.3x), end-to-end {s['e2e_pairs_s'] / t['e2e_pairs_s']:.2f}x, "
          f"peak RSS {s['peak_rss_gb'] / t['peak_rss_gb']:.2f}x")


if __name__ == "__main__":
    main()
