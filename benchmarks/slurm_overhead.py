"""Overhead of Slurm scheduling: the tiny Table 3 graph run here (launcher=local) vs submitted to the
local cluster (launcher=slurm, scripts/slurm-local.sh), same nodes, same settings, fresh runs roots.

    python benchmarks/slurm_overhead.py [--train-steps 20] [--keep]

Prints the wall time of each, their ratio, and the time from `solar.experiment` start to the
driver's exit on Slurm (it submits and returns). Both sides run the 1-CPU nodes two at a time on a
2-core node (the local launcher shares the cores like Slurm does), so the ratio is Slurm's own
cost: submission, dependency polling, job start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from solar.pipeline.slurm import job_states


def experiment(runs: Path, launcher: str, steps: int) -> subprocess.CompletedProcess:
    train = f'["trainer.max_steps={steps}","trainer.checkpoint_every_n_steps={steps}","logger=csv"]'
    return subprocess.run(
        [sys.executable, "-m", "solar.experiment", "experiment=table3", "scale=tiny",
         f"paths.runs={runs}", f"launcher={launcher}", "report=false",
         f"stage_overrides.train={train}"], capture_output=True, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the runs roots")
    args = parser.parse_args()
    if not shutil.which("sbatch"):
        sys.exit("no sbatch: start a cluster with `sudo bash scripts/slurm-local.sh`")
    root = Path(tempfile.mkdtemp(prefix="slurm-overhead-"))
    # the tiny world and tokenizer are built once, outside both timings
    os.environ.setdefault("SOLAR_CACHE", str(root / "cache"))
    warm = subprocess.run([sys.executable, "-m", "solar.experiment", "experiment=table3",
                           "scale=tiny", f"paths.runs={root / 'warm'}", "dry_run=true"],
                          capture_output=True, text=True)
    assert warm.returncode == 0, warm.stderr

    start = time.time()
    local = experiment(root / "local", "local", args.train_steps)
    local_s = time.time() - start
    assert local.returncode == 0, local.stdout + local.stderr

    start = time.time()
    slurm = experiment(root / "slurm", "slurm", args.train_steps)
    submit_s = time.time() - start
    assert slurm.returncode == 0, slurm.stdout + slurm.stderr
    plan = json.loads((root / "slurm" / "tiny" / "experiments" / "table3" / "plan.json").read_text())
    jobs = [n["job_id"] for n in plan["nodes"]]
    while any(s["state"] in ("pending", "running") for s in job_states(jobs).values()):
        time.sleep(1)
    slurm_s = time.time() - start
    states = job_states(jobs)
    assert all(s["state"] == "done" for s in states.values()), states

    print(f"tiny Table 3 graph ({len(jobs)} nodes, {args.train_steps} training steps per SFT):")
    print(f"  launcher=local : {local_s:7.1f} s wall (nodes side by side on the cores)")
    print(f"  launcher=slurm : {slurm_s:7.1f} s wall (submit to last job end), "
          f"driver exited after {submit_s:.1f} s")
    print(f"  slurm / local  : {slurm_s / local_s:7.2f}x")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
