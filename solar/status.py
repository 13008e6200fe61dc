"""python -m solar.status experiment=<name> [scale=tiny]: the state of each node of the latest
submission (done, running, pending, failed with its log, cancelled with the parent that failed),
from the plan under the runs root, the outputs on disk and Slurm's accounting (sacct)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from solar.cli import run_command
from solar.pipeline import plan as plans
from solar.runs import CONF_DIR


def status(cfg: DictConfig) -> list[dict]:
    plan = plans.load(plans.plan_dir(cfg.paths.runs, cfg.scale.name, cfg.experiment))
    slurm = {}
    if plan["launcher"] == "slurm":
        from solar.pipeline.slurm import job_states
        slurm = job_states([n["job_id"] for n in plan["nodes"] if n.get("job_id")])
    return plans.node_states(plan, slurm)


@hydra.main(config_path=str(CONF_DIR), config_name="experiment", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        rows = status(cfg)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    counts = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
        note = row.get("reason") or (f"log: {row['log']}" if row["state"] == "failed" else "")
        job = f"job {row['job_id']}" if row.get("job_id") else ""
        print(f"  {row['name']:<18} {row['stage']:<8} {row['state']:<10} {job:<12} {note}")
    print(f"{cfg.experiment} (scale={cfg.scale.name}): " +
          ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    run_command(main, "status")   # composition errors exit 2, as every entry point
