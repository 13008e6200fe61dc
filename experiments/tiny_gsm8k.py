"""What the tiny world needs to score on GSM8K under the leaderboard's 5-shot strict-match.

    python experiments/tiny_gsm8k.py [--out runs/tiny_gsm8k] [--steps 300] [--seed 0]

GSM8K is 0 in every row of the tiny paper (experiments/tiny_fidelity.py). This script measures
where the score is lost, with the project's own commands only (no special code path):

1. the tiny base (`dus` -> `cpt`, made if missing) and SFT v3 from it, GSM8K only;
2. `cpt_worksheets`: the base pretrained further on worksheet pages (the tiny generator
   `worksheets`: 4-6 solved word problems in GSM8K's `Question:/Answer: ... #### n` layout per
   page, 138-220 tokens) in rows of 256 tokens, so it is trained at the positions of a 5-shot
   prompt (~180-210 tokens; the tiny world's own rows are 128 tokens, its examples < 100);
3. `sft_v3_worksheets`: SFT v3 (chat template) from `cpt_worksheets`.

Each model's GSM8K is evaluated by `solar.evaluate eval.tasks=[gsm8k]` (leaderboard shots and
filter; written to eval/h6-gsm8k.json). Finished runs and evaluations are kept: a rerun only does
what is missing. About 7 minutes on 2 CPU cores (the worksheet pretraining is 4 of them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


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


def gsm8k(runs: Path, name: str) -> float:
    """GSM8K strict-match x 100 of run ``name`` (evaluated once; later calls read the file)."""
    path = runs / "tiny" / name / "eval" / "h6-gsm8k.json"
    if not path.is_file():
        solar(runs, "solar.evaluate", f"model={name}", "eval.tasks=[gsm8k]", "logger=csv")
    return 100 * json.loads(path.read_text())["scores"]["gsm8k"]


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

    rows = [("cpt", "the tiny base (DUS + CPT)"),
            ("sft_v3", "SFT v3 from the base"),
            ("cpt_worksheets", (f"base + {args.steps} steps x {args.rows} rows x 256 tokens of "
                                "worksheet pages")),
            ("sft_v3_worksheets", "SFT v3 from cpt_worksheets")]
    print("\n| run | what | GSM8K (5-shot, strict-match) x 100 |\n|---|---|---|")
    for name, what in rows:
        print(f"| {name} | {what} | {gsm8k(runs, name):.1f} |")
    if made:
        print("\ntrain / upscale seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in made.items()))


if __name__ == "__main__":
    main()
