"""The plan of a submission: nodes, commands, parents, resources, job ids; written under the runs
root (``<runs>/<scale>/experiments/<experiment>/plan.json``) where solar.status reads it back."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from solar.pipeline.graph import Node
from solar.runs import write_json


def plan_dir(runs_root: Path, scale: str, experiment: str) -> Path:
    return Path(runs_root) / scale / "experiments" / Path(experiment).stem


def make_plan(order: list[Node], *, experiment: str, scale: str, launcher: str,
              resources: dict) -> dict:
    return {
        "experiment": experiment, "scale": scale, "launcher": launcher,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "nodes": [{"name": n.name, "stage": n.stage, "run": n.run, "output": n.output,
                   "parents": n.parents,
                   "command": shlex.join(["python", *n.argv[1:]]), "after_any": n.after_any,
                   "resources": resources[n.stage], "skipped": n.done,
                   "state": "skipped" if n.done else "pending"} for n in order],
    }


def save(plan: dict, directory: Path) -> Path:
    """plan.json (the latest, read by solar.status) and a copy per submission."""
    path = directory / "plan.json"
    write_json(path, plan)
    write_json(directory / "submissions" / f"{plan['created']}.json", plan)
    return path


def load(directory: Path) -> dict:
    path = directory / "plan.json"
    if not path.is_file():
        raise FileNotFoundError(f"no plan at {path}: submit the experiment first "
                                "(python -m solar.experiment experiment=<name> ...)")
    return json.loads(path.read_text())


def describe(res: dict) -> str:
    gpus = f"{res['gpus_per_node']} GPU" if res.get("gpus_per_node") else "cpu"
    mem = f", {res['mem_gb']} GB" if res.get("mem_gb") else ""
    return (f"{res['nodes']}x{res['tasks_per_node']} task, {res['cpus_per_task']} cpu, "
            f"{gpus}{mem}, {res['timeout_min']} min")


def print_plan(plan: dict, header: str) -> None:
    print(header)
    for n in plan["nodes"]:
        todo = "skip (finished)" if n["skipped"] else "run"
        parents = ",".join(n["parents"]) or "-"
        print(f"  {n['name']:<18} {n['stage']:<8} {todo:<16} after: {parents:<28} "
              f"[{describe(n['resources'])}]")
        if not n["skipped"]:
            print(f"      {n['command']}")


def node_states(plan: dict, slurm_states: dict[str, dict]) -> list[dict]:
    """Each node's state now: done | running | pending | failed | cancelled (with the reason),
    from its output on disk first, then Slurm's accounting (or the local runner's record)."""
    by_name, rows = {}, []
    for n in plan["nodes"]:
        row = {"name": n["name"], "stage": n["stage"], "job_id": n.get("job_id"),
               "log": n.get("log"), "state": n.get("state", "pending")}
        if n.get("job_id") in slurm_states:
            row.update(slurm_states[n["job_id"]])
        if n["output"] and Path(n["output"]).exists():
            row["state"] = "done"
        elif n["skipped"]:
            row["state"] = "missing"   # was finished at submission, output gone since
        if row["state"] == "cancelled":
            bad = [p for p in n["parents"] if by_name.get(p, {}).get("state") in
                   ("failed", "cancelled")]
            if bad:
                row["reason"] = f"parent {bad[0]} {by_name[bad[0]]['state']}"
        by_name[n["name"]] = row
        rows.append(row)
    return rows


def still_queued(directory: Path) -> dict[str, dict]:
    """Nodes of the previous Slurm submission whose jobs are still pending or running: a rerun
    depends on those jobs instead of submitting the same node twice."""
    if not (directory / "plan.json").is_file():
        return {}
    previous = load(directory)
    jobs = {n["name"]: n for n in previous["nodes"] if n.get("job_id")}
    if previous.get("launcher") != "slurm" or not jobs:
        return {}
    from solar.pipeline.slurm import job_states

    states = job_states([n["job_id"] for n in jobs.values()])
    return {name: {k: n[k] for k in ("job_id", "log", "stdout") if k in n}
            for name, n in jobs.items()
            if states.get(n["job_id"], {}).get("state") in ("pending", "running")}
