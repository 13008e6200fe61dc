"""The tiny world as a miniature of the paper: run every stage at scale=tiny for two seeds, evaluate
H6 of every model, and print the paper's findings (a)-(h) with both seeds' numbers.

    python experiments/tiny_fidelity.py [--seeds 42 1] [--out runs/tiny_fidelity] [--report-only]

Each seed gets its own runs folder (<out>/seed<k>/tiny/<run>/...) and one run of the experiment
driver (`python -m solar.experiment experiment=paper scale=tiny launcher=local`, `++seed=<k>`
passed to every node): finished models and evaluations are kept, so a rerun only does what is
missing; per-node wall times go to <out>/seed<k>/times.json. An effect counts only if it exceeds the
seed-to-seed spread: A > B holds when A - B > max(spread of A, spread of B) on every seed, where a
spread is max - min of a score over the seeds; A >= B holds when A - B >= 0 on every seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# (run, entry) of the paper's models, in the order of the printed tables
STAGES = [
    ("dus", "upscale"), ("cpt", "train"),
    ("sft_v1", "train"), ("sft_v2", "train"), ("sft_v3", "train"), ("sft_v4", "train"),
    ("sft_v3_v4", "merge"),
    ("dpo_v1", "train"), ("dpo_v2", "train"), ("dpo_v3", "train"), ("dpo_v1_v2", "merge"),
    ("cand_1", "train"), ("cand_2", "train"),
    ("merge_v1", "merge"), ("merge_v2", "merge"), ("merge_v3", "merge"), ("merge_v4", "merge"),
    ("sdpo", "train"),
]
COLUMNS = ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"]
TITLES = ["ARC", "HS", "MMLU", "TQA", "WG", "GSM8K"]


def run_seed(runs: Path, seed: int) -> dict[str, float]:
    """Produce and evaluate every model of the tiny paper under ``runs`` through the experiment
    driver (``experiments/paper.yaml``, launcher=local: nodes side by side on the cores); return
    node -> seconds (wall time of each node, so two running together both count)."""
    times_path = runs / "times.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    env = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "offline"))
    cmd = [sys.executable, "-m", "solar.experiment", "experiment=paper", "scale=tiny",
           "launcher=local", f"paths.runs={runs}", "report=false", f'overrides=["++seed={seed}"]',
           'stage_overrides.train=["logger=csv"]', 'stage_overrides.evaluate=["logger=csv"]']
    print(f"seed {seed}: {' '.join(cmd[1:])}", flush=True)
    code = subprocess.run(cmd, env=env, check=False).returncode
    plan = json.loads((runs / "tiny" / "experiments" / "paper" / "plan.json").read_text())
    times.update({n["name"]: n["seconds"] for n in plan["nodes"] if "seconds" in n})
    times_path.write_text(json.dumps(times, indent=1))
    if code:
        sys.exit(f"the tiny paper (seed {seed}) did not finish (exit {code}); rerun to resume")
    return times


def load_scores(runs: Path) -> dict[str, dict[str, float]]:
    """run -> {h6, arc_challenge, ...} x 100, from each run's eval/h6.json."""
    out = {}
    for run, _ in STAGES:
        path = runs / "tiny" / run / "eval" / "h6.json"
        if path.is_file():
            res = json.loads(path.read_text())
            out[run] = {"h6": res["h6"], **{k: 100 * v for k, v in res["scores"].items()}}
    return out


def table(scores: dict[str, dict[str, float]]) -> str:
    lines = ["| run | H6 | " + " | ".join(TITLES) + " |", "|---" * (len(TITLES) + 2) + "|"]
    for run, s in scores.items():
        lines.append(f"| {run} | {s['h6']:.1f} | " + " | ".join(f"{s[c]:.1f}" for c in COLUMNS)
                     + " |")
    return "\n".join(lines)


def compare(per_seed: list[dict], a: str, b: str, col: str, strict: bool = True) -> tuple[bool, str]:
    """A > B (strict: beyond the seed-to-seed spread) or A >= B on every seed, and the numbers."""
    xa = [s[a][col] for s in per_seed]
    xb = [s[b][col] for s in per_seed]
    diffs = [x - y for x, y in zip(xa, xb)]
    spread = max(max(xa) - min(xa), max(xb) - min(xb))
    ok = min(diffs) > spread if strict else min(diffs) >= 0
    nums = " / ".join(f"{x:.1f} vs {y:.1f}" for x, y in zip(xa, xb))
    return ok, f"{a} {'>' if strict else '>='} {b} on {col}: {nums} (spread {spread:.1f})"


def findings(per_seed: list[dict]) -> list[tuple[str, bool, list[str]]]:
    """The paper's findings (a)-(h): (label, holds on every seed, evidence lines)."""
    out = []

    def finding(label, checks, need="all"):
        oks = [c[0] for c in checks]
        holds = all(oks) if need == "all" else any(oks)
        out.append((label, holds, [("ok   " if ok else "FAIL ") + text for ok, text in checks]))

    finding("(a) CPT > DUS on H6", [compare(per_seed, "cpt", "dus", "h6")])
    finding("(b) each SFT > its base (CPT) on H6",
            [compare(per_seed, f"sft_v{k}", "cpt", "h6") for k in (1, 2, 3, 4)])
    finding("(c) Synth. Math-Instruct raises GSM8K: SFT v3 > v2 and v4 > v1",
            [compare(per_seed, "sft_v3", "sft_v2", "gsm8k"),
             compare(per_seed, "sft_v4", "sft_v1", "gsm8k")])
    gsm = compare(per_seed, "sft_v2", "sft_v1", "gsm8k")
    down = [compare(per_seed, "sft_v1", "sft_v2", c) for c in ("arc_challenge", "hellaswag",
                                                               "truthfulqa_mc2")]
    out.append(("(d) OpenOrca shifts the profile: v2 vs v1 GSM8K up, one of ARC/HS/TQA down",
                gsm[0] and any(d[0] for d in down),
                [("ok   " if ok else "FAIL ") + t for ok, t in [gsm, *down]]))
    finding("(e) DPO v1 and v2 > SFT v3 on H6",
            [compare(per_seed, "dpo_v1", "sft_v3", "h6"),
             compare(per_seed, "dpo_v2", "sft_v3", "h6")])
    finding("(f) Synth. Math-Alignment: DPO v2 > DPO v1 on GSM8K",
            [compare(per_seed, "dpo_v2", "dpo_v1", "gsm8k")])
    better = [max(("sft_v3", "sft_v4"), key=lambda r: s[r]["gsm8k"]) for s in per_seed]
    merged = [dict(s, better={**s[b]}) for s, b in zip(per_seed, better)]
    finding("(g) SFT v3+v4 >= the better parent on GSM8K",
            [compare(merged, "sft_v3_v4", "better", "gsm8k", strict=False)])
    weaker = [dict(s, weaker=min((s["cand_1"], s["cand_2"]), key=lambda x: x["h6"]))
              for s in per_seed]
    finding("(h) every Merge v1-v4 >= the weaker of Cand. 1/2 on H6",
            [compare(weaker, f"merge_v{k}", "weaker", "h6", strict=False) for k in (1, 2, 3, 4)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("SOLAR_RUNS", "runs"))
                    / "tiny_fidelity")
    ap.add_argument("--report-only", action="store_true", help="print from existing h6.json files")
    args = ap.parse_args()
    per_seed, all_times = [], {}
    for seed in args.seeds:
        runs = (args.out / f"seed{seed}").resolve()
        if not args.report_only:
            t0 = time.perf_counter()
            all_times[seed] = run_seed(runs, seed)
            print(f"seed {seed}: tiny paper done in {time.perf_counter() - t0:.0f} s "
                  f"(stages that already existed are not re-timed)", flush=True)
        per_seed.append(load_scores(runs))
        print(f"\n### seed {seed} (H6 and columns x 100)\n\n{table(per_seed[-1])}\n")
    for seed in args.seeds:
        path = args.out / f"seed{seed}" / "times.json"
        if path.is_file():
            times = json.loads(path.read_text())
            train = sum(v for k, v in times.items() if not k.startswith("eval:"))
            evals = sum(v for k, v in times.items() if k.startswith("eval:"))
            print(f"seed {seed} times: stages {train:.0f} s + evaluations {evals:.0f} s = "
                  f"{train + evals:.0f} s; " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print("\n### Findings (holds = on every seed, beyond the seed-to-seed spread)\n")
    for label, holds, lines in findings(per_seed):
        print(f"- {label}: {'HOLDS' if holds else 'does not hold'}")
        for line in lines:
            print(f"    {line}")


if __name__ == "__main__":
    main()
