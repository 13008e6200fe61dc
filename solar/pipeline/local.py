"""Run a graph on this machine, one node at a time in dependency order (no Slurm needed).

A failed node cancels its dependents, as ``--kill-on-invalid-dep`` does on Slurm; nodes that do
not depend on it still run. Each node's output goes to its own log file.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path
from collections.abc import Callable

from solar.pipeline.graph import Node


def run_local(order: list[Node], log_dir: Path,
              on_update: Callable[[str, dict], None]) -> dict[str, str]:
    """Run every node not done; returns node -> done | failed | cancelled | skipped."""
    states: dict[str, str] = {}
    todo = [n for n in order if not n.done]
    log_dir.mkdir(parents=True, exist_ok=True)
    for node in order:
        if node.done:
            states[node.name] = "skipped"
            continue
        blocked = [p for p in node.parents if states.get(p) not in ("done", "skipped")]
        if blocked and not node.after_any:
            states[node.name] = "cancelled"
            on_update(node.name, {"state": "cancelled", "reason": f"parent {blocked[0]} "
                                  f"{states.get(blocked[0])}"})
            print(f"  {node.name}: cancelled ({blocked[0]} {states.get(blocked[0])})", flush=True)
            continue
        log = log_dir / f"{node.name.replace(':', '-')}.log"
        print(f"[{todo.index(node) + 1}/{len(todo)}] {node.name}: {shlex.join(node.argv[1:])}",
              flush=True)
        on_update(node.name, {"state": "running", "log": str(log)})
        start = time.time()
        with open(log, "w") as out:
            code = subprocess.run(node.argv, stdout=out, stderr=subprocess.STDOUT,
                                  check=False).returncode
        seconds = round(time.time() - start, 1)
        states[node.name] = "done" if code == 0 else "failed"
        on_update(node.name, {"state": states[node.name], "log": str(log), "seconds": seconds})
        if code == 0:
            print(f"  {node.name}: done in {seconds:.0f} s", flush=True)
        else:
            tail = "\n    ".join(log.read_text().splitlines()[-5:])
            print(f"  {node.name}: FAILED (exit {code}) after {seconds:.0f} s; log {log}:\n    "
                  f"{tail}", flush=True)
    return states
