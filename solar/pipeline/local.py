"""Run a graph on this machine in dependency order, nodes side by side while they fit (no Slurm).

Like a one-node Slurm: the machine's cores (``cpus``) are shared among the nodes, each node takes
``resources.<stage>.cpus_per_task`` x ``tasks_per_node`` of them as its thread count
(``OMP_NUM_THREADS``, which torch reads), and a node starts once its parents are done and its cores
are free. A node that starts while nothing else is ready gets every free core, so the start and
the end of the graph, where it is a chain, run at full speed. A node that asks for GPUs runs alone.
Among ready nodes, the one heading the longest chain of work starts first (rough stage costs:
a training before the evaluations, so the chain to the last merge keeps moving). A failed node
cancels its dependents, as ``--kill-on-invalid-dep`` does on Slurm; nodes that do not depend on it
still run. Each node's output goes to its own log file.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from solar.pipeline.graph import Node

POLL_S = 0.2


def machine_cpus() -> int:
    """The cores this process may run on (its affinity, e.g. inside a Slurm allocation)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def node_cpus(res: dict, cpus: int) -> int:
    """Cores a node takes here: all of them for a GPU node, else its tasks x cpus per task."""
    if res.get("gpus_per_node"):
        return cpus
    asked = int(res.get("cpus_per_task") or 1) * int(res.get("tasks_per_node") or 1)
    return max(1, min(cpus, asked))


# rough cost of a node by stage, relative to a training: only used to order ready nodes
COST = {"train": 1.0, "evaluate": 0.7, "upscale": 0.05, "merge": 0.05, "report": 0.05}


def critical_path(order: list[Node]) -> dict[str, float]:
    """Node -> the cost of the longest chain from it to the end of the graph, itself included."""
    length: dict[str, float] = {}
    children: dict[str, list[str]] = {n.name: [] for n in order}
    for node in order:
        for parent in node.parents:
            if parent in children:
                children[parent].append(node.name)
    for node in reversed(order):   # children come later in a topological order
        length[node.name] = COST.get(node.stage, 1.0) + max(
            (length[c] for c in children[node.name]), default=0.0)
    return length


def cancel_blocked(waiting: list[Node], states: dict[str, str],
                   on_update: Callable[[str, dict], None]) -> None:
    """Cancel the waiting nodes a failed or cancelled parent blocks, down to grandchildren."""
    cancelled = True
    while cancelled:
        cancelled = False
        for node in list(waiting):
            bad = [p for p in node.parents if states.get(p) in ("failed", "cancelled")]
            if bad and not node.after_any:
                waiting.remove(node)
                cancelled = True
                states[node.name] = "cancelled"
                on_update(node.name, {"state": "cancelled",
                                      "reason": f"parent {bad[0]} {states[bad[0]]}"})
                print(f"  {node.name}: cancelled ({bad[0]} {states[bad[0]]})", flush=True)


def run_local(order: list[Node], log_dir: Path, on_update: Callable[[str, dict], None], *,
              resources: dict | None = None, cpus: int = 1) -> dict[str, str]:
    """Run every node not done; returns node -> done | failed | cancelled | skipped."""
    resources = resources or {}
    states = {n.name: "skipped" for n in order if n.done}
    todo = [n for n in order if not n.done]
    rank = critical_path(order)
    waiting = sorted(todo, key=lambda n: (-rank[n.name], order.index(n)))
    running: dict[str, tuple[subprocess.Popen, float, int, Path, object]] = {}
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(node: Node, threads: int) -> None:
        waiting.remove(node)
        log = log_dir / f"{node.name.replace(':', '-')}.log"
        print(f"[{len(todo) - len(waiting)}/{len(todo)}] {node.name}: {shlex.join(node.argv[1:])}"
              + (f"  ({threads} thread{'s' * (threads > 1)})" if cpus > 1 else ""), flush=True)
        on_update(node.name, {"state": "running", "log": str(log)})
        out = open(log, "w")   # noqa: SIM115 - open while the node runs, closed in finish()
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        proc = subprocess.Popen(node.argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        running[node.name] = (proc, time.time(), threads, log, out)

    def finish(name: str, code: int) -> None:
        _, started, _, log, out = running.pop(name)
        out.close()
        seconds = round(time.time() - started, 1)
        states[name] = "done" if code == 0 else "failed"
        on_update(name, {"state": states[name], "log": str(log), "seconds": seconds})
        if code == 0:
            print(f"  {name}: done in {seconds:.0f} s", flush=True)
        else:
            tail = "\n    ".join(log.read_text().splitlines()[-5:])
            print(f"  {name}: FAILED (exit {code}) after {seconds:.0f} s; log {log}:\n    "
                  f"{tail}", flush=True)

    try:
        while waiting or running:
            cancel_blocked(waiting, states, on_update)
            ready = [n for n in waiting if all(p in states for p in n.parents)]
            free = cpus - sum(r[2] for r in running.values())
            for node in ready:
                need = node_cpus(resources.get(node.stage, {}), cpus)
                if need > free:
                    break   # keep the priority order: nothing jumps ahead of a node that waits
                threads = free if len(ready) == 1 and not running else need
                start(node, threads)
                free -= threads
            if not running:
                if waiting:   # cannot happen for a graph from topological(): parents are its nodes
                    raise RuntimeError("nodes wait on parents outside the graph: "
                                       + ", ".join(n.name for n in waiting))
                break
            time.sleep(POLL_S)
            for name, (proc, *_) in list(running.items()):
                if proc.poll() is not None:
                    finish(name, proc.returncode)
    except BaseException:   # Ctrl-C or an error here: the nodes started stop with the driver
        for proc, *_ in running.values():
            proc.terminate()
        for proc, *_ in running.values():
            proc.wait()
        raise
    return states
