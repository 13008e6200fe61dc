"""What the tiny world needs to score on GSM8K under the leaderboard's 5-shot strict-match.

    python experiments/tiny_gsm8k.py [--out runs/tiny_gsm8k] [--steps 300] [--seed 0]

GSM8K is 0 in every row of the tiny paper (experiments/tiny_fidelity.py). This script measures
where the score is lost, with the project's own commands only (no special code path):

1. the tiny base (`dus` -> `cpt`, made if missing) and SFT v3 from it, GSM8K only;
2. `cpt_worksheets`: the base pretrained further on worksheet pages (the tiny generator
   `worksheets`: 4-6 solved word problems in GSM8K's `Question:/Answer: ... #### n` layout per
   page, 138-220 tokens) in rows of 256 tokens, so it is trained at the positions of a 5-shot
   prompt (~180-210 tokens; the tiny world's own rows are 128 tokens, its examples < 100);
3. `sft_v3_worksheets`: SFT v3 (chat template) from `cpt_worksheets`;
4. `cpt_legs`, `sft_v3_legs`, `sft_v3_legs_fewshot`: the same on problems whose answer needs no
   word of the question copied (`world.legs_problem`: "How many legs do a zorp and a blick have
   together?" -> "Together they have 10 legs.\n#### 10", pages from the generator
   `legs_worksheets`, SFT v3 with `legs_metamathqa` as its Synth. Math-Instruct, or
   `legs_fewshot_metamathqa`, whose queries hold solved problems in GSM8K's layout), scored on a
   GSM8K of those problems (`eval.data_dir`, same shots and filter). The tiny model never learns
   to copy the apples problems' names and numbers; this separates that from the format and the
   arithmetic.

Each model's GSM8K is evaluated by `solar.evaluate eval.tasks=[gsm8k]` (leaderboard shots and
filter; written to eval/h6-gsm8k.json). Finished runs and evaluations are kept: a rerun only does
what is missing. About 13 minutes on 2 CPU cores (the two extra pretrainings are 7 of them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from solar.data.tiny import benchmarks
from solar.data.tiny.world import legs_problem


def solar(runs: Path, *args: str) -> float:
    """Run one solar command at scale=tiny under ``runs`` (W&B offline unless WANDB_MODE says
    otherwise); return its wall seconds. A failing command stops the script, naming it."""
    cmd = [sys.executable, "-m", *args, "scale=tiny", f"paths.runs={runs}"]
    shown = "python -m " + " ".join(cmd[2:])
    print("$ " + shown, flush=True)
    t0 = time.perf_counter()
    code = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, env=dict(
        os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "offline"))).returncode
    if code:
        sys.exit(f"error: `{shown}` failed (exit {code}); its message is above")
    return time.perf_counter() - t0


def gsm8k(runs: Path, name: str, data_dir: Path | None = None) -> float:
    """GSM8K strict-match x 100 of run ``name`` (evaluated once; later calls read the file), on
    the tiny world's GSM8K or on the one under ``data_dir``."""
    path = runs / "tiny" / name / "eval" / "h6-gsm8k.json"
    if not path.is_file():
        solar(runs, "solar.evaluate", f"model={name}", "eval.tasks=[gsm8k]", "logger=csv",
              *([f"eval.data_dir={data_dir}"] if data_dir else []))
    return 100 * json.loads(path.read_text())["scores"]["gsm8k"]


def legs_gsm8k(runs: Path) -> Path:
    """A GSM8K folder (test: 40 items, train: the few-shot pool) of ``world.legs_problem``."""
    data_dir = runs / "legs_benchmarks"
    for split, n, seed in (("test", 40, 0), ("train", 50, 1)):
        path = data_dir / "gsm8k" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = benchmarks.gsm8k(n, seed, legs_problem)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path,
                    default=Path(os.environ.get("SOLAR_RUNS", "runs")) / "tiny_gsm8k")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps on worksheet pages")
    ap.add_argument("--rows", type=int, default=16, help="256-token rows per step")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    runs, seed = args.out.resolve(), f"++seed={args.seed}"
    made = {}

    def train(name: str, *overrides: str) -> None:
        if not (runs / "tiny" / name / "model").is_dir():
            made[name] = solar(runs, "solar.train", *overrides, f"run.name={name}", "logger=csv",
                               seed)

    if not (runs / "tiny" / "dus" / "model").is_dir():
        made["dus"] = solar(runs, "solar.upscale", seed)
    train("cpt", "+ablation=cpt")
    train("sft_v3", "+ablation=sft_v3")
    train("cpt_worksheets", "+ablation=cpt", "model.pretrained=cpt",
          "++data.sources.cpt_corpus.tiny=worksheets", "data.max_length=256",
          f"data.micro_batch_size={args.rows}", f"trainer.max_steps={args.steps}")
    train("sft_v3_worksheets", "+ablation=sft_v3", "model.pretrained=cpt_worksheets")
    # legs pages are shorter (~150-200 tokens): 8 rows a step is the same tokens per page seen
    train("cpt_legs", "+ablation=cpt", "model.pretrained=cpt",
          "++data.sources.cpt_corpus.tiny=legs_worksheets", "data.max_length=256",
          "data.micro_batch_size=8", f"trainer.max_steps={args.steps}")
    train("sft_v3_legs", "+ablation=sft_v3", "model.pretrained=cpt_legs",
          "++data.sources.synth_math_instruct.tiny=legs_metamathqa")
    train("sft_v3_legs_fewshot", "+ablation=sft_v3", "model.pretrained=cpt_legs",
          "++data.sources.synth_math_instruct.tiny=legs_fewshot_metamathqa", "data.max_length=256")
    legs = legs_gsm8k(runs)

    rows = [("cpt", "the tiny base (DUS + CPT)"),
            ("sft_v3", "SFT v3 from the base"),
            ("cpt_worksheets", (f"base + {args.steps} steps x {args.rows} rows x 256 tokens of "
                                "worksheet pages")),
            ("sft_v3_worksheets", "SFT v3 from cpt_worksheets")]
    rows += [("cpt_legs", f"base + {args.steps} steps x 8 rows x 256 tokens of legs pages"),
             ("sft_v3_legs", "SFT v3 from cpt_legs, legs problems as its math rows"),
             ("sft_v3_legs_fewshot", ("the same, its math rows holding 0-4 solved problems "
                                      "in GSM8K's layout before the asked one"))]
    print("\n| run | what | GSM8K (5-shot, strict-match) x 100 |\n|---|---|---|")
    for name, what in rows:
        on_legs = "_legs" in name
        score = gsm8k(runs, name, legs if on_legs else None)
        print(f"| {name} | {what} | {score:.1f}{' (legs GSM8K)' if on_legs else ''} |")
    if made:
        print("\ntrain / upscale seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in made.items()))


if __name__ == "__main__":
    main()
