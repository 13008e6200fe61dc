"""python -m solar.experiment experiment=<table3 | ... | paper> [scale=tiny] [launcher=slurm|local]
[dry_run=true]: a paper table as a graph of solar commands, submitted to Slurm or run here.

compose -> rows (experiments/<name>.yaml) -> graph from the rows' configs (solar/pipeline/graph.py)
-> validate every node -> plan -> Slurm jobs with afterok dependencies (returns at once) or local
runs in dependency order, side by side on this machine's cores (solar/pipeline/local.py).
Finished nodes are skipped, so a rerun submits only what is missing.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from solar.cli import run_command
from solar.config import ConfigError, validate_train
from solar.pipeline import plan as plans
from solar.pipeline.graph import GraphBuilder, GraphError, load_experiment, topological
from solar.pipeline.resources import check
from solar.runs import CONF_DIR


def build(cfg: DictConfig) -> list:
    """The graph's nodes in dependency order, every node's config and resources checked."""
    tables, extra_rows = load_experiment(cfg.experiment, Path(cfg.experiments_dir or
                                                              CONF_DIR.parent / "experiments"))
    container = OmegaConf.to_container(cfg, resolve=True)
    builder = GraphBuilder(lambda entry, args: hydra.compose(config_name=entry, overrides=args),
                           scale=cfg.scale.name, runs_root=Path(cfg.paths.runs).resolve(),
                           cache=Path(cfg.paths.cache).expanduser().resolve(),
                           overrides=container["overrides"],
                           stage_overrides=container["stage_overrides"],
                           row_overrides=container["row_overrides"])
    for _, rows in tables:
        for row in rows:
            builder.add_row(row, evaluate=cfg.evaluate)
    for row in extra_rows:
        builder.add_row(row, evaluate=cfg.evaluate)
    if cfg.report:
        for table, rows in tables:
            builder.add_report(table, rows)
    order = topological(builder.nodes)
    errors = []
    for node in order:
        res = container["resources"][node.stage]
        if node.stage == "train" and not node.done:
            try:
                validate_train(node.config)
            except ConfigError as err:
                errors += [f"node '{node.name}': {e}" for e in err.errors]
        errors += check(node.name, res, node.config.trainer if node.stage == "train" else None)
    if errors:
        raise ConfigError(errors)
    return order


def local_cpus(value) -> int:
    """The cores launcher=local shares among nodes: ``auto`` (this machine's) or a count."""
    from solar.pipeline.local import machine_cpus

    cpus = machine_cpus() if value == "auto" else value
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus <= 0:
        raise ConfigError([f"`local_cpus` must be auto or an integer > 0 (got {value!r})"])
    return cpus


def launch(cfg: DictConfig, order: list) -> int:
    launcher = cfg.launcher if cfg.launcher != "auto" else (
        "slurm" if shutil.which("sbatch") else "local")
    if launcher not in ("slurm", "local"):
        raise ConfigError([f"`launcher` must be slurm, local or auto (got {cfg.launcher!r})"])
    cpus = local_cpus(cfg.local_cpus) if launcher == "local" else None  # before anything is written
    if launcher == "slurm" and not shutil.which("sbatch"):
        raise ConfigError([("`launcher`=slurm but `sbatch` is not on PATH: run on a Slurm login "
                            "node, or use launcher=local")])
    resources = OmegaConf.to_container(cfg.resources, resolve=True)
    plan = plans.make_plan(order, experiment=cfg.experiment, scale=cfg.scale.name,
                           launcher=launcher, resources=resources)
    directory = plans.plan_dir(cfg.paths.runs, cfg.scale.name, cfg.experiment)
    todo = sum(not n.done for n in order)
    if cfg.dry_run:
        plans.print_plan(plan, f"plan of {cfg.experiment} at scale={cfg.scale.name}, launcher="
                         f"{launcher}: {todo} node(s) to run, {len(order) - todo} finished "
                         "(dry run: nothing submitted)")
        return 0
    status = (f"python -m solar.status experiment={cfg.experiment} scale={cfg.scale.name} "
              f"paths.runs={cfg.paths.runs}")
    if launcher == "slurm":
        from solar.pipeline.slurm import submit
        jobs = submit(order, log_dir=directory / "logs", resources=resources,
                      cluster=OmegaConf.to_container(cfg.cluster, resolve=True),
                      queued=plans.still_queued(directory))
        for node in plan["nodes"]:
            node.update(jobs.get(node["name"], {}))
        plans.print_plan(plan, f"submitted {len(jobs)} job(s) of {cfg.experiment} "
                         f"(scale={cfg.scale.name}); {len(order) - todo} node(s) finished already")
        print(f"plan: {plans.save(plan, directory)}\nstatus: {status}")
        return 0
    from solar.pipeline.local import run_local

    by_name = {n["name"]: n for n in plan["nodes"]}
    plans.save(plan, directory)
    states = run_local(order, directory / "logs", lambda name, update: (
        by_name[name].update(update), plans.save(plan, directory)),
        resources=resources, cpus=cpus)
    failed = sorted(n for n, s in states.items() if s in ("failed", "cancelled"))
    print(f"{cfg.experiment}: {len(order) - len(failed)} of {len(order)} node(s) done"
          + (f"; failed or cancelled: {', '.join(failed)}" if failed else "") + f"\n{status}")
    return 1 if failed else 0


@hydra.main(config_path=str(CONF_DIR), config_name="experiment", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        order = build(cfg)
        code = launch(cfg, order)
    except (ConfigError, GraphError, HydraException) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    run_command(main, "experiment")   # composition errors exit 2, as every entry point
