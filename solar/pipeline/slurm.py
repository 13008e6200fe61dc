"""Submit a graph to Slurm through submitit: one job per node, ``afterok`` on its parents' jobs.

The driver submits and returns (unlike Hydra's submitit launcher, which waits for its array).
``--kill-on-invalid-dep=yes``: when a parent fails, Slurm cancels its dependents instead of
leaving them pending forever. Requeueing belongs to submitit (USR2 before the time limit, and
preemption): each node job is Checkpointable and reruns its command, and every solar command is
resumable (training from ``last.ckpt``) or an idempotent rerun (DUS, merges, evaluation).
Lightning's own SLURM requeue is switched off in solar/stage.py so the two never both requeue.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import submitit

from solar.pipeline.graph import Node
from solar.pipeline.resources import slurm_parameters

# sacct state -> node state
STATES = {"PENDING": "pending", "REQUEUED": "pending", "REQUEUE_HOLD": "pending",
          "PREEMPTED": "pending", "RUNNING": "running", "COMPLETING": "running",
          "SUSPENDED": "running", "COMPLETED": "done", "CANCELLED": "cancelled", "FAILED": "failed",
          "TIMEOUT": "failed", "OUT_OF_MEMORY": "failed", "NODE_FAIL": "failed",
          "BOOT_FAIL": "failed", "DEADLINE": "failed"}


class NodeJob(submitit.helpers.Checkpointable):
    """What one Slurm job runs: the node's solar command, as a child process.

    Checkpointable: on USR2 (time limit, preemption) submitit requeues this same object, and the
    command resumes where its run directory left off. A job requeued after its output was written
    (preempted while exiting) finds ``output`` and ends at once, so every rerun is idempotent.
    """

    def __init__(self, argv: list[str], cwd: str, output: str | None = None):
        self.argv, self.cwd, self.output = argv, cwd, output

    def __call__(self) -> None:
        if self.output and Path(self.output).exists():
            print(f"{self.output} exists: finished by an earlier run of this job")
            return
        env = dict(os.environ)
        # torch would start one thread per core of the node; the job owns cpus_per_task of them
        env.setdefault("OMP_NUM_THREADS", env.get("SLURM_CPUS_PER_TASK", "1"))
        code = subprocess.run(self.argv, cwd=self.cwd, env=env, check=False).returncode
        if code != 0:
            raise RuntimeError(f"`{shlex.join(self.argv)}` exited with code {code}")


def submit(order: list[Node], *, log_dir: Path, resources: dict, cluster: dict,
           queued: dict[str, dict]) -> dict[str, dict]:
    """Submit every node that is neither done nor still queued from an earlier submission
    (``queued``: node -> its job); returns node -> {job_id, log}. On any failure the jobs
    submitted so far are cancelled, so nothing is left half submitted."""
    jobs: dict[str, dict] = {}
    submitted: list[str] = []
    try:
        for node in order:
            if node.done:
                continue
            if node.name in queued:
                jobs[node.name] = queued[node.name]
                continue
            executor = submitit.SlurmExecutor(folder=log_dir,
                                              max_num_timeout=cluster["max_requeues"])
            params = slurm_parameters(resources[node.stage], cluster,
                                      f"solar-{node.name.replace(':', '-')}")
            deps = [jobs[p]["job_id"] for p in node.parents if p in jobs]
            if deps:
                params["dependency"] = ("afterany:" if node.after_any else "afterok:") + \
                    ":".join(deps)
            params["additional_parameters"] = {"kill-on-invalid-dep": "yes",
                                               **(cluster.get("additional_parameters") or {})}
            executor.update_parameters(**params)
            job = executor.submit(NodeJob(node.argv, os.getcwd(), node.output))
            submitted.append(job.job_id)
            jobs[node.name] = {"job_id": job.job_id, "log": str(job.paths.stderr),
                               "stdout": str(job.paths.stdout)}
    except BaseException:
        if submitted:
            subprocess.run(["scancel", *submitted], check=False)
        raise
    return jobs


def job_states(job_ids: list[str]) -> dict[str, dict]:
    """sacct's view of some jobs: job id -> {state, start, end} (node states, ISO times)."""
    if not job_ids:
        return {}
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Start,End",
                          "-j", ",".join(job_ids)], capture_output=True, text=True, check=True)
    states = {}
    for line in out.stdout.splitlines():
        job_id, state, start, end = line.split("|")
        word = state.split()[0] if state else "PENDING"
        states[job_id] = {"state": STATES.get(word, word.lower()), "slurm": state,
                          "start": start, "end": end}
    return states
