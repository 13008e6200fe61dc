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
5. `sft_v1_legs_lr0.0001` ... `sft_v4_legs_lr0.0001`: the four SFT ablations from `cpt_legs` at a
   tenth of the tiny SFT lr (`--sft-lr`; at the default 1e-3, a third of the CPT lr, every SFT
   overwrites the skill), v3 and v4 with the few-shot legs rows as Synth. Math-Instruct, all in
   256-token rows, and SFT v3+v4 (their average): Table 3's GSM8K comparisons (v3 > v2, v4 > v1,
   the merge >= the better parent) on a base that has the skill;
6. `dpo_v1_legs_lr0.0001`, `dpo_v2_legs_lr0.0001`: DPO v1 and v2 from that SFT v3 at the tiny
   DPO lr, v2's Synth. Math-Alignment pairs built from the few-shot legs rows
   (`legs_competition_math` holds their terse originals): Table 4's GSM8K comparison
   (DPO v2 > DPO v1).

Each model's GSM8K is evaluated by `solar.evaluate eval.tasks=[gsm8k]` (leaderboard shots and
filter; written to eval/h6-gsm8k.json). Finished runs and evaluations are kept: a rerun only does
what is missing. About 25 minutes on 2 CPU cores (the two extra pretrainings are 7 of them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from solar.data.tiny.benchmarks import write_legs_gsm8k


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path,
                    default=Path(os.environ.get("SOLAR_RUNS", "runs")) / "tiny_gsm8k")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps on worksheet pages")
    ap.add_argument("--rows", type=int, default=16, help="256-token rows per step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sft-lr", type=float, default=1e-4,
                    help="lr of the four SFT rows from cpt_legs (the tiny SFT default is 1e-3)")
    args = ap.parse_args()
    runs, seed = args.out.resolve(), f"++seed={args.seed}"
    made = {}

    def produce(name: str, module: str, *args: str) -> None:
        """Run ``module`` unless run ``name`` has its model already (a rerun does what is missing)."""
        if not (runs / "tiny" / name / "model").is_dir():
            made[name] = solar(runs, module, *args)

    def train(name: str, *overrides: str) -> None:
        produce(name, "solar.train", *overrides, f"run.name={name}", "logger=csv", seed)

    produce("dus", "solar.upscale", seed)
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
    low = f"lr{args.sft_lr:g}"
    for v in (1, 2, 3, 4):
        math_rows = ["++data.sources.synth_math_instruct.tiny=legs_fewshot_metamathqa"] if v >= 3 \
            else []
        train(f"sft_v{v}_legs_{low}", f"+ablation=sft_v{v}", "model.pretrained=cpt_legs",
              *math_rows, "data.max_length=256", f"++objective.tiny.lr={args.sft_lr}")
    produce(f"sft_v3_v4_legs_{low}", "solar.merge", "+ablation=sft_v3_v4",
            f"run.name=sft_v3_v4_legs_{low}", f"merge.models=[sft_v3_legs_{low},sft_v4_legs_{low}]")
    # Table 4's DPO v1 / v2 from that SFT v3, at the tiny DPO lr; v2's Synth. Math-Alignment pairs
    # are the few-shot legs rows: chosen = the worked `#### n` answer, rejected = the boxed
    # one-liner
    train(f"dpo_v1_legs_{low}", "+ablation=dpo_v1", f"model.pretrained=sft_v3_legs_{low}",
          "data.max_length=256")
    train(f"dpo_v2_legs_{low}", "+ablation=dpo_v2", f"model.pretrained=sft_v3_legs_{low}",
          "data.max_length=256",
          "++data.sources.synth_math_alignment.questions.tiny=legs_fewshot_metamathqa",
          "++data.sources.synth_math_alignment.questions.types=[MATH_FOBAR]",
          "++data.sources.synth_math_alignment.solutions.tiny=legs_competition_math")
    legs = write_legs_gsm8k(runs / "legs_benchmarks")

    rows = [("cpt", "the tiny base (DUS + CPT)"),
            ("sft_v3", "SFT v3 from the base"),
            ("cpt_worksheets", (f"base + {args.steps} steps x {args.rows} rows x 256 tokens of "
                                "worksheet pages")),
            ("sft_v3_worksheets", "SFT v3 from cpt_worksheets")]
    rows += [("cpt_legs", f"base + {args.steps} steps x 8 rows x 256 tokens of legs pages"),
             ("sft_v3_legs", "SFT v3 from cpt_legs, legs problems as its math rows"),
             ("sft_v3_legs_fewshot", ("the same, its math rows holding 0-4 solved problems "
                                      "in GSM8K's layout before the asked one"))]
    names = {1: "Alpaca-GPT4", 2: "+ OpenOrca", 3: "+ OpenOrca + Synth. Math-Instruct (few-shot "
             "legs rows)", 4: "Alpaca-GPT4 + Synth. Math-Instruct (few-shot legs rows)"}
    rows += [(f"sft_v{v}_legs_{low}", f"SFT v{v} from cpt_legs at lr {args.sft_lr:g}: {names[v]}")
             for v in (1, 2, 3, 4)]
    rows.append((f"sft_v3_v4_legs_{low}", "SFT v3+v4: Average 0.5/0.5 of the two rows above"))
    rows += [(f"dpo_v1_legs_{low}", f"DPO v1 (UltraFeedback) from sft_v3_legs_{low}"),
             (f"dpo_v2_legs_{low}", "DPO v2: + Synth. Math-Alignment of the legs problems")]
    print("\n| run | what | GSM8K (5-shot, strict-match) x 100 |\n|---|---|---|")
    scores = {}
    for name, what in rows:
        on_legs = "_legs" in name
        scores[name] = score = gsm8k(runs, name, legs if on_legs else None)
        print(f"| {name} | {what} | {score:.1f}{' (legs GSM8K)' if on_legs else ''} |")
    v = {k: scores[f"sft_v{k}_legs_{low}"] for k in (1, 2, 3, 4)}
    print(f"\nTable 3 on the legs GSM8K, SFT at lr {args.sft_lr:g} from cpt_legs: "
          f"(c) v3 > v2: {v[3]:.1f} vs {v[2]:.1f} ({'yes' if v[3] > v[2] else 'no'}); "
          f"v4 > v1: {v[4]:.1f} vs {v[1]:.1f} ({'yes' if v[4] > v[1] else 'no'}); "
          f"(d) OpenOrca raises GSM8K, v2 > v1: {v[2]:.1f} vs {v[1]:.1f} "
          f"({'yes' if v[2] > v[1] else 'no'}); (g) SFT v3+v4 >= the better parent: "
          f"{scores[f'sft_v3_v4_legs_{low}']:.1f} vs {max(v[3], v[4]):.1f} "
          f"({'yes' if scores[f'sft_v3_v4_legs_{low}'] >= max(v[3], v[4]) else 'no'})")
    d1, d2 = scores[f"dpo_v1_legs_{low}"], scores[f"dpo_v2_legs_{low}"]
    print(f"Table 4: (f) Synth. Math-Alignment raises GSM8K, DPO v2 > DPO v1: {d2:.1f} vs {d1:.1f} "
          f"({'yes' if d2 > d1 else 'no'})")
    if made:
        print("\ntrain / upscale seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in made.items()))


if __name__ == "__main__":
    main()
