"""SFT on one CUDA GPU: tokens/s and model FLOPs utilisation, solar vs TRL's SFTTrainer.

    python benchmarks/gpu_mfu.py [--steps 20] [--warmup 3] [--rows 4] [--seq 4096] [--peak-tflops N]

Both train the same seeded ~1.1B Llama-architecture model (TinyLlama's shape: hidden 2048, 22
layers, 32 heads / 4 KV heads, MLP 5632, vocab 32000; random init, nothing is downloaded) on the
same synthetic SFT examples (token ids drawn at random, prompt 32-512 and response 64-1024
tokens, loss on the response only), `--rows` packed rows of `--seq` tokens per optimizer step,
fp32 master weights with bf16 autocast, flash-attn 2 varlen over the packed examples, fused
AdamW, no activation checkpointing. solar: its packing (best-fit decreasing), padding-free
micro-batch and loss (LM head on target positions only); TRL: `packing=True` (bfd,
padding-free) with `attn_implementation="flash_attention_2"`.

FLOPs per trained token = 6·N (N = parameters of every matmul: decoder layers + LM head; the
embedding lookup is not a matmul) + attention 6·layers·hidden·ΣL²/ΣL (causal QKᵀ and AV, forward
and backward, over the examples' own lengths L: no attention across packed examples).
MFU = FLOPs/token x tokens/s / the GPU's dense bf16 peak (H100/H200 SXM 989 TFLOP/s, A100 312;
`--peak-tflops` for others). Needs CUDA and the `gpu` extra (flash-attn) and `bench` (TRL).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch

ARCH = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
            num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-5,
            rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
            pad_token_id=0)
VOCAB = 32000
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}  # dense bf16, SXM parts


def examples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt, response = rng.randint(32, 512), rng.randint(64, 1024)
        ids = [1] + [rng.randrange(3, VOCAB) for _ in range(prompt + response - 2)] + [2]
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def flops_per_token(model, data: list[dict]) -> float:
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    lengths = [len(x["input_ids"]) for x in data]
    attn = 6 * ARCH["num_hidden_layers"] * ARCH["hidden_size"] * sum(x * x for x in lengths) / \
        sum(lengths)
    return 6 * n + attn


def solar_run(data, args) -> float:
    from solar.data.datamodule import collate
    from solar.data.packing import concat_row, pack
    from solar.objectives.base import token_loss_sum
    from solar.objectives.sft import SFTModule

    module = SFTModule(architecture=ARCH, vocab_size=VOCAB, lr=1e-5, max_steps=args.steps,
                       attn_implementation="flash_attention_2")
    model = module.model.cuda()
    opt = module.configure_optimizers()["optimizer"]
    rows = [concat_row([data[i] for i in g]) for g in pack([len(x["input_ids"]) for x in data],
                                                            args.seq)]
    tokens, start = 0, None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            torch.cuda.synchronize()
            tokens, start = 0, time.perf_counter()
        chunk = rows[step * args.rows:(step + 1) * args.rows]
        batch = collate(chunk, 0, packed=True, padding_free=True)  # one row, no padding
        batch = {k: v.cuda(non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss_sum, n = token_loss_sum(model, batch)
        (loss_sum / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += batch["n_tokens"]
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    del module, model, opt
    torch.cuda.empty_cache()
    return tokens / elapsed


def trl_run(data, args) -> float:
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from solar.data.tiny.tokenizer import tiny_tokenizer

    class Clock(TrainerCallback):
        def __init__(self):
            self.step, self.start, self.tokens = 0, None, 0

        def on_step_begin(self, a, state, control, **kw):
            if self.step == args.warmup:
                torch.cuda.synchronize()
                self.start, self.tokens = time.perf_counter(), 0
            self.step += 1

    config = LlamaConfig(**ARCH, vocab_size=VOCAB)
    config._attn_implementation = "flash_attention_2"
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        tok = tiny_tokenizer(out)  # only its pad id is used: the data are already token ids
        cfg = SFTConfig(output_dir=out, per_device_train_batch_size=args.rows,
                        max_steps=args.warmup + args.steps, learning_rate=1e-5,
                        max_length=args.seq, packing=True, bf16=True,
                        gradient_checkpointing=False, optim="adamw_torch_fused", report_to=[],
                        logging_steps=1000, save_strategy="no", dataloader_num_workers=0,
                        seed=0)
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(data),
                             processing_class=tok, callbacks=[clock])
        original = trainer.compute_loss

        def compute_loss(model, inputs, *a, **kw):
            if clock.step > args.warmup:
                clock.tokens += int(inputs["input_ids"].numel())  # padding-free: all real
            return original(model, inputs, *a, **kw)

        trainer.compute_loss = compute_loss
        trainer.train()
        torch.cuda.synchronize()
    return clock.tokens / (time.perf_counter() - clock.start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--peak-tflops", type=float, default=None)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: gpu_mfu.py needs a CUDA GPU (and pip install -e .[gpu,bench])")
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if peak is None:
        raise SystemExit(f"error: unknown bf16 peak for {name}; pass --peak-tflops")
    # enough examples for every step: ~830 tokens per example, rows x seq tokens per step
    data = examples(int((args.warmup + args.steps) * args.rows * args.seq / 700) + 64)
    from transformers import LlamaConfig, LlamaForCausalLM
    with torch.device("meta"):
        fpt = flops_per_token(LlamaForCausalLM(LlamaConfig(**ARCH, vocab_size=VOCAB)), data)
    results = {"solar": solar_run(data, args), "trl (packing, flash-attn)": trl_run(data, args)}
    print(f"\n{name}, bf16 peak {peak:.0f} TFLOP/s, {fpt / 1e9:.2f} GFLOP per token "
          f"({args.rows} rows x {args.seq} tokens per step)")
    print(f"{'trainer':<28}{'tokens/s':>12}{'MFU':>8}")
    for k, tps in results.items():
        print(f"{k:<28}{tps:>12,.0f}{tps * fpt / (peak * 1e12):>8.1%}")
    print(f"\nsolar / TRL tokens/s: {results['solar'] / results['trl (packing, flash-attn)']:.2f}x")


if __name__ == "__main__":
    main()
