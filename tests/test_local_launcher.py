"""launcher=local as a one-node scheduler: real processes, their start/end times and thread counts.

Each node is a short Python process that records when it ran and the OMP_NUM_THREADS it was given,
so the tests read the schedule off the files, not off the launcher's own bookkeeping.
"""

from __future__ import annotations

import itertools
import json
import sys
import time

import pytest

from solar.pipeline.graph import Node
from solar.pipeline.local import critical_path, run_local

SLEEP_S = 0.6
ONE_CPU = {"train": {"cpus_per_task": 1, "tasks_per_node": 1},
           "evaluate": {"cpus_per_task": 1, "tasks_per_node": 1},
           "merge": {"cpus_per_task": 1, "tasks_per_node": 1}}


def node(tmp, name, stage="train", parents=(), fail=False):
    code = (f"import json, os, sys, time; t0 = time.time(); time.sleep({SLEEP_S!r}); "
            "json.dump({'start': t0, 'end': time.time(), 'threads': os.environ['OMP_NUM_THREADS']},"
            f" open({str(tmp / f'{name}.json')!r}, 'w')); sys.exit({3 if fail else 0})")
    return Node(name=name.replace("_", ":"), stage=stage, argv=[sys.executable, "-c", code],
                parents=[p.replace("_", ":") for p in parents])


def record(tmp, name):
    return json.loads((tmp / f"{name}.json").read_text())


def graph(tmp, fail_b=False):
    """a -> {b, c}, b -> eval_b, {b, c} -> m (a merge), m -> eval_m; c -> eval_c."""
    return [node(tmp, "a"), node(tmp, "b", parents=["a"], fail=fail_b),
            node(tmp, "c", parents=["a"]),
            node(tmp, "m", "merge", ["b", "c"]), node(tmp, "eval_b", "evaluate", ["b"]),
            node(tmp, "eval_c", "evaluate", ["c"]), node(tmp, "eval_m", "evaluate", ["m"])]


def test_nodes_share_the_cores_and_wait_for_their_parents(tmp_path):
    order = graph(tmp_path)
    updates = []
    states = run_local(order, tmp_path / "logs", lambda n, u: updates.append((n, u)),
                       resources=ONE_CPU, cpus=2)
    assert set(states.values()) == {"done"}
    r = {n: record(tmp_path, n) for n in ["a", "b", "c", "m", "eval_b", "eval_c", "eval_m"]}
    # a starts alone and gets both cores; b and c then run side by side with one each
    assert r["a"]["threads"] == "2"
    assert r["b"]["threads"] == r["c"]["threads"] == "1"
    assert r["b"]["start"] >= r["a"]["end"] and r["c"]["start"] >= r["a"]["end"]
    assert r["b"]["start"] < r["c"]["end"] and r["c"]["start"] < r["b"]["end"]   # overlap
    assert r["m"]["start"] >= max(r["b"]["end"], r["c"]["end"])
    assert r["eval_m"]["start"] >= r["m"]["end"]
    # never more than 2 nodes at once: at each start, count the nodes running
    for name, rec in r.items():
        busy = [o for o, x in r.items() if x["start"] <= rec["start"] < x["end"]]
        assert len(busy) <= 2, (name, busy)
    done = [u for n, u in updates if u["state"] == "done"]
    assert len(done) == 7 and all(u["seconds"] >= SLEEP_S for u in done)


def test_one_cpu_runs_one_node_at_a_time_longest_chain_first(tmp_path):
    a, b, c, m, eval_b, eval_c, eval_m = graph(tmp_path)
    order = [a, b, c, eval_b, eval_c, m, eval_m]   # also topological: evaluations listed first
    run_local(order, tmp_path / "logs", lambda n, u: None, resources=ONE_CPU, cpus=1)
    names = ["a", "b", "c", "m", "eval_b", "eval_c", "eval_m"]
    spans = sorted((record(tmp_path, n)["start"], record(tmp_path, n)["end"], n) for n in names)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    # once b and c are done, the merge (a chain of 0.75 after it) goes before the evaluations
    # of b and c (0.7), although the list names them first
    assert [n for _, _, n in spans] == names


def test_a_failed_node_cancels_its_descendants_and_the_rest_still_runs(tmp_path, capsys):
    order = graph(tmp_path, fail_b=True)
    states = run_local(order, tmp_path / "logs", lambda n, u: None, resources=ONE_CPU, cpus=2)
    assert states == {"a": "done", "b": "failed", "c": "done", "m": "cancelled",
                      "eval:b": "cancelled", "eval:c": "done", "eval:m": "cancelled"}
    out = capsys.readouterr().out
    assert "b: FAILED (exit 3)" in out and "eval:m: cancelled (m cancelled)" in out
    assert not (tmp_path / "m.json").exists() and (tmp_path / "eval_c.json").exists()


def test_a_gpu_node_runs_alone(tmp_path):
    order = [node(tmp_path, "g"), node(tmp_path, "e", "evaluate")]
    run_local(order, tmp_path / "logs", lambda n, u: None, cpus=4,
              resources={"train": {"cpus_per_task": 1, "tasks_per_node": 1, "gpus_per_node": 1},
                         "evaluate": {"cpus_per_task": 1, "tasks_per_node": 1}})
    g, e = record(tmp_path, "g"), record(tmp_path, "e")
    assert g["threads"] == "4" and (e["start"] >= g["end"] or g["start"] >= e["end"])


def test_ready_nodes_are_ordered_by_the_longest_chain_after_them(tmp_path):
    # a: train 1 + c 1 + m 0.05 + eval:m 0.7; b: 1 + 0.05 + 0.7; c likewise; evaluations 0.7
    got = critical_path(graph(tmp_path))
    want = {"a": 2.75, "b": 1.75, "c": 1.75, "m": 0.75, "eval:b": 0.7, "eval:c": 0.7, "eval:m": 0.7}
    assert got == pytest.approx(want)


def test_stopping_the_driver_stops_the_nodes_it_started(tmp_path):
    """Ctrl-C in the driver (here: raised while it starts the second node) terminates the first
    node's process instead of leaving it running unattended."""
    order = [node(tmp_path, "a"), node(tmp_path, "b")]
    started = []

    def interrupt_on_second_start(name, update):
        if update["state"] == "running":
            started.append(name)
            if len(started) == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_local(order, tmp_path / "logs", interrupt_on_second_start, resources=ONE_CPU, cpus=2)
    time.sleep(SLEEP_S + 0.5)
    assert started == ["a", "b"]
    assert not (tmp_path / "a.json").exists()   # killed during its sleep, never finished
