"""Provenance of a run directory: no finished-looking run without its lineage, no debris after a
kill, and command lines Hydra cannot compose exit 2 (a user error), not 1 (a crash)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import hydra
import pytest
from hydra import compose, initialize_config_dir

import solar.merge
import solar.runs
import solar.stage
import solar.upscale
from solar.cli import run_command
from solar.runs import CONF_DIR, remove_stale
from solar.weights.synthetic import write_random_llama


class Crash(RuntimeError):
    """A crash injected between the model export and its lineage."""


def crash(*args, **kwargs):
    raise Crash("killed between export and lineage")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return [write_random_llama(root / f"m{i}", seed=i) for i in (1, 2)]


def _compose(name, *overrides):
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose(name, overrides=list(overrides))


def _debris(parent):
    return sorted(p.name for p in parent.glob(".*-*")) if parent.is_dir() else []


@pytest.mark.parametrize("entry", ["merge", "upscale"])
def test_crash_before_lineage_leaves_no_finished_run(entry, pair, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    args = (["+merge=average", f"merge.models=[{pair[0]},{pair[1]}]", "output.progress=false"]
            if entry == "merge" else [f"model.pretrained={pair[0]}", "upscale.m=1",
                                      "upscale.progress=false"])
    cfg = _compose(entry, f"paths.runs={runs}", "run.name=out", *args)
    module = getattr(solar, entry)
    with monkeypatch.context() as m:
        m.setattr(module, "write_lineage", crash)
        with pytest.raises(Crash):
            module.run(cfg)
    assert not (runs / "paper" / "out").exists() and _debris(runs / "paper") == []
    out = module.run(cfg)   # the rerun is not refused: nothing looked finished
    assert json.loads((out / "lineage.json").read_text())["parents"]
    assert (out / "model" / "config.json").is_file()


def test_train_crash_before_lineage_leaves_no_model_and_the_rerun_finishes(tmp_path, monkeypatch,
                                                                           cache_dir):
    from solar.train import train

    cfg = _compose("train", "+ablation=sft_v3", "scale=tiny", "model.pretrained=null",
                   f"paths.runs={tmp_path}",
                   "logger=csv", "trainer.max_steps=2", "trainer.checkpoint_every_n_steps=2",
                   "data.micro_batch_size=2", "data.grad_accum=1",
                   *[f"data.sources.{s}.max_samples=20" for s in
                     ("alpaca_gpt4", "openorca", "synth_math_instruct")])
    run_dir = tmp_path / "tiny" / "sft_v3"
    with monkeypatch.context() as m:
        m.setattr(solar.stage, "write_lineage", crash)
        with pytest.raises(Crash):
            train(cfg)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (run_dir / "model").exists() and not (run_dir / "lineage.json").exists()
    assert _debris(run_dir) == []
    model = train(cfg)   # resumes from the last checkpoint, exports with its lineage
    lineage = json.loads((model / "lineage.json").read_text())
    assert lineage == json.loads((run_dir / "lineage.json").read_text())
    assert lineage["method"] == "sft" and lineage["data"]["train"]


KILLED_EXPORT = """
import os, signal, sys
from solar.runs import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "model").mkdir()
    (tmp / "model" / "model.safetensors").write_bytes(b"0" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)   # kill -9 in the middle of an export
"""


def test_a_killed_runs_debris_is_removed_by_the_next_run(pair, tmp_path):
    final = tmp_path / "runs" / "paper" / "out"
    killed = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(final)])
    assert killed.returncode == -signal.SIGKILL
    debris = _debris(final.parent)
    assert len(debris) == 1 and debris[0].startswith(".tmp-out-")
    res = subprocess.run([sys.executable, "-m", "solar.merge", "+merge=average",
                          f"merge.models=[{pair[0]},{pair[1]}]", f"paths.runs={tmp_path / 'runs'}",
                          "run.name=out", "output.progress=false"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    notice = [x for x in res.stdout.splitlines() if "stale" in x]
    assert notice == [f"removed 1 stale dir(s) left by an interrupted run of {final}: "
                      f"{debris[0]}"]
    assert _debris(final.parent) == [] and (final / "lineage.json").is_file()


def test_only_this_names_dirs_older_than_this_process_are_stale(tmp_path):
    final = tmp_path / "out"
    old = [tmp_path / ".tmp-out-0123abcd", tmp_path / ".old-out-4567ef01"]
    live = tmp_path / ".tmp-out-89abcdef"    # e.g. another export of this process, in progress
    other = tmp_path / ".tmp-out-b-01234567"  # run `out-b`'s, not `out`'s
    for p in (*old, live, other):
        p.mkdir()
    past = solar.runs.PROCESS_START - 60
    for p in (*old, other):
        os.utime(p, (past, past))
    assert remove_stale(final) == old
    assert live.is_dir() and other.is_dir() and not any(p.exists() for p in old)


ENTRY_TYPOS = {"train": ["+ablation=sft_v3", "trainer.max_stepz=3"],
               "merge": ["+merge=average", "merge.wieghts=[1,1]"],
               "upscale": ["scale=huge"],
               "evaluate": ["eval.limt=3"],
               "contamination": ["n=[1"],
               "experiment": ["experiment=table3", "dry_rn=true"],
               "status": ["experiment=table3", "scale=huge"],
               "report": ["tabel=3"]}


@pytest.mark.parametrize("entry", list(ENTRY_TYPOS))
def test_hydra_composition_errors_exit_2(entry, tmp_path, monkeypatch, capsys):
    # in this process (each entry point's own run_command call, as under `python -m`): the
    # heavy imports of train / contamination are paid once per test session, not per case
    module = __import__(f"solar.{entry}" + (".__main__" if entry == "report" else ""),
                        fromlist=["main"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"solar.{entry}", *ENTRY_TYPOS[entry]])
    with pytest.raises(SystemExit) as stop:
        run_command(module.main, entry)
    assert stop.value.code == 2
    assert "HYDRA_FULL_ERROR" in capsys.readouterr().err   # Hydra's message names the key
    assert not any(tmp_path.iterdir())


def test_python_dash_m_exits_2_on_a_misspelled_key(tmp_path):
    res = subprocess.run([sys.executable, "-m", "solar.merge", "+merge=average",
                          "merge.wieghts=[1,1]"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and "Key 'wieghts' is not in struct" in res.stderr


@hydra.main(config_path=str(CONF_DIR), config_name="merge", version_base=None)
def _crashing_task(cfg):
    raise RuntimeError("a bug in the task")


def test_a_crash_in_the_task_still_exits_1(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["solar.x", "output.progress=false"])
    with pytest.raises(SystemExit) as stop:
        run_command(_crashing_task, "x")
    assert stop.value.code == 1 and "a bug in the task" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["solar.x", "output.progres=false"])
    with pytest.raises(SystemExit) as stop:
        run_command(_crashing_task, "x")   # the same entry point, misspelled key: 2
    assert stop.value.code == 2
