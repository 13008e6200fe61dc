"""kill -9 at the worst moments, then the same command again: same numbers, complete metrics.

Each kill is a SIGKILL the process sends itself at a chosen point (no handler, no cleanup: what a
node failure or `kill -9` does), so the point is exact instead of a race with a polling test. The
entry points otherwise run as subprocesses, exactly as a user runs them.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from solar.weights.synthetic import write_random_llama

SFT = ["+ablation=sft_v3", "scale=tiny", "logger=csv", "model.pretrained=null",
       "trainer.max_steps=6",
       "trainer.checkpoint_every_n_steps=2", "trainer.log_every_n_steps=1",
       "data.micro_batch_size=2", "data.grad_accum=1", "objective.warmup_steps=2",
       *[f"data.sources.{s}.max_samples=300" for s in
         ("alpaca_gpt4", "openorca", "synth_math_instruct")]]

# `python -c KILL_AT_STEP -- <overrides>`: solar.train, killed as optimizer step $KILL_AT_STEP starts
KILL_AT_STEP = """
import os, runpy, signal
from solar.objectives.base import CausalLMModule
at, step = int(os.environ["KILL_AT_STEP"]), CausalLMModule.training_step
def killing(self, batch, i):
    if self.global_step == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, batch, i)
CausalLMModule.training_step = killing
runpy.run_module("solar.train", run_name="__main__", alter_sys=True)
"""
# solar.<entry>, killed after $KILL_AFTER_WRITES writes of weight bytes (mid-shard, mid-file)
KILL_WHILE_WRITING = """
import os, runpy, signal
import solar.weights.writer as w
left, write_all = [int(os.environ["KILL_AFTER_WRITES"])], w._write_all
def killing(fd, buf):
    left[0] -= 1
    if left[0] < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    write_all(fd, buf)
w._write_all = killing
runpy.run_module("solar." + os.environ["ENTRY"], run_name="__main__", alter_sys=True)
"""
# solar.train with DPO, killed halfway through writing the reference log-prob cache
KILL_IN_REF_CACHE = """
import os, runpy, signal
import solar.objectives.reference as ref
save = ref.save_file
def half_then_die(tensors, path, metadata=None):
    save(tensors, path, metadata=metadata)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
ref.save_file = half_then_die
runpy.run_module("solar.train", run_name="__main__", alter_sys=True)
"""


def run(args, env=None, code=None, entry="train"):
    cmd = [sys.executable, *(["-c", code] if code else ["-m", f"solar.{entry}"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "WANDB_MODE": "offline", **(env or {})})


def rows(run_dir: Path) -> list[dict]:
    return list(csv.DictReader(open(run_dir / "metrics" / "metrics.csv")))


def train_steps(table: list[dict]) -> list[int]:
    return [int(r["step"]) for r in table if r.get("train/loss")]


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    """The uninterrupted run every crash is compared with."""
    runs = tmp_path_factory.mktemp("runs")
    proc = run([*SFT, f"paths.runs={runs}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = runs / "tiny" / "sft_v3"
    return run_dir, rows(run_dir), weights(run_dir / "model")


def test_kill_right_after_a_checkpoint_and_between_two_resumes_bit_for_bit(reference, tmp_path):
    _, ref_rows, ref_weights = reference
    run_dir = tmp_path / "tiny" / "sft_v3"
    args = [*SFT, f"paths.runs={tmp_path}"]
    # checkpoints after steps 2 and 4: killed as step 2 starts, then (resumed from 2) at step 3
    for kill_at in (2, 3):
        proc = run(args, {"KILL_AT_STEP": str(kill_at)}, KILL_AT_STEP)
        assert proc.returncode == -9, proc.stderr[-3000:]
        assert not (run_dir / "model").exists()
        assert train_steps(rows(run_dir)) == list(range(kill_at))  # flushed up to the kill
    proc = run(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the resumed run's log holds none of the Lightning warnings that do not apply (stage.py)
    for noise in ("ModelCheckpoint with manual optimization", "checkpoint that ended before the "
                  "epoch ended", "`srun` command is available", "LeafSpec"):
        assert noise not in proc.stderr, noise

    got = rows(run_dir)
    assert train_steps(got) == list(range(6))  # every step exactly once
    assert [r["step"] for r in got if r.get("val/loss")] == \
        [r["step"] for r in ref_rows if r.get("val/loss")]
    loss_diff = max(abs(float(a["train/loss"]) - float(b["train/loss"]))
                    for a, b in zip([r for r in got if r.get("train/loss")],
                                    [r for r in ref_rows if r.get("train/loss")]))
    for key in ("train/loss", "val/loss", "lr", "tokens_seen", "step"):
        assert [r[key] for r in got] == [r[key] for r in ref_rows], key
    resumed = weights(run_dir / "model")
    weight_diff = max(float((resumed[n] - t).abs().max()) for n, t in ref_weights.items())
    print(f"\nkill at steps 2 and 3: {len(got)} metrics rows (reference {len(ref_rows)}), "
          f"max |loss diff| {loss_diff}, max |weight diff| {weight_diff}")
    assert loss_diff == 0 and weight_diff == 0
    lineage = json.loads((run_dir / "lineage.json").read_text())
    assert lineage["restarts"] == 2 and lineage["resumed_at_steps"] == [2, 2]


def test_overwrite_starts_over_and_keeps_the_old_run_until_the_first_checkpoint(reference):
    run_dir, ref_rows, old = reference
    runs = run_dir.parent.parent
    args = [*SFT, f"paths.runs={runs}", "objective.lr=0.002"]
    refused = run(args)  # other settings, no overwrite: one line naming the key
    assert refused.returncode == 2 and "objective.lr" in refused.stderr
    proc = run([*args, "run.overwrite=true"], {"KILL_AT_STEP": "1"}, KILL_AT_STEP)
    assert proc.returncode == -9  # killed before the new run's first checkpoint
    (aside,) = run_dir.parent.glob(".replaced-sft_v3-*")
    assert torch.equal(weights(aside / "model")["lm_head.weight"], old["lm_head.weight"])
    assert not (run_dir / "model").exists() and not (run_dir / "checkpoints").exists()

    proc = run(args)  # the rerun continues the new run (its settings are now the run's)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(run_dir.parent.glob(".replaced-sft_v3-*"))
    got = rows(run_dir)
    assert train_steps(got) == list(range(6))
    assert max(float(r["lr"]) for r in got if r.get("lr")) == pytest.approx(0.002)
    assert max(float(r["lr"]) for r in ref_rows if r.get("lr")) != pytest.approx(0.002)
    new = weights(run_dir / "model")
    assert not torch.equal(new["lm_head.weight"], old["lm_head.weight"])
    assert json.loads((run_dir / "lineage.json").read_text())["params"]["lr"] == 0.002


@pytest.mark.parametrize("entry", ["merge", "upscale"])
def test_merge_and_upscale_killed_while_writing_leave_nothing_finished(tmp_path, entry):
    runs = tmp_path / "runs"
    for name, seed in (("a", 1), ("b", 2)):
        write_random_llama(runs / "tiny" / name / "model", seed=seed, hidden=128, layers=4)
    args = ["scale=tiny", f"paths.runs={runs}", "run.name=out"] + (
        ["+merge=average", "merge.models=[a,b]", "output.shard_size=100KB",
         "output.progress=false"] if entry == "merge" else
        ["model.pretrained=a", "upscale.shard_size=100KB", "upscale.progress=false"])
    proc = run(args, {"KILL_AFTER_WRITES": "12", "ENTRY": entry}, KILL_WHILE_WRITING)
    assert proc.returncode == -9, proc.stderr[-3000:]
    out = runs / "tiny" / "out"
    assert not out.exists()  # only a .tmp-out-* directory, never a finished-looking run
    assert list(out.parent.glob(".tmp-out-*"))
    proc = run(args, entry=entry)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run([*args, "run.name=uninterrupted"], entry=entry)
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = json.loads((out / "model" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3  # the kill was mid-way through the shards
    for shard in sorted((out / "model").glob("*.safetensors")):
        assert shard.read_bytes() == (runs / "tiny" / "uninterrupted" / "model" /
                                      shard.name).read_bytes(), shard.name


def test_dpo_reference_cache_killed_mid_write_is_never_read_and_wandb_continues(tmp_path,
                                                                                 cache_dir):
    secret = "solar-test-secret-0123456789abcdef0123456789abcdef"
    args = ["+ablation=dpo_v1", "scale=tiny", "model.pretrained=null", "logger=wandb",
            f"paths.runs={tmp_path}", "trainer.max_steps=2", "trainer.checkpoint_every_n_steps=2",
            "data.val_fraction=0", "data.micro_batch_size=4",
            "data.sources.ultrafeedback_clean.max_samples=40"]
    env = {"WANDB_API_KEY": secret}
    ref_cache = Path(cache_dir) / "ref_logps"
    before = set(ref_cache.glob("*.safetensors")) if ref_cache.exists() else set()
    killed = run(args, env, KILL_IN_REF_CACHE)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert set(ref_cache.glob("*.safetensors")) == before  # the half file is only a temp file
    done = run(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    computed = re.search(r"reference log-probs: (\d+) pairs in", done.stdout)
    assert computed, done.stdout[-2000:]  # recomputed, not read half-written
    (new,) = set(ref_cache.glob("*.safetensors")) - before
    assert load_file(new)["train"].shape == (int(computed[1]), 2)

    run_dir = tmp_path / "tiny" / "dpo_v1"
    record = json.loads((run_dir / "resume.json").read_text())
    wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2  # two attempts, one W&B run id: they sync as one run
    assert {p.name.rsplit("-", 1)[1] for p in wandb_runs} == {record["wandb_ids"]["dpo_v1"]}
    assert json.loads((run_dir / "lineage.json").read_text())["restarts"] == 1
    for path in run_dir.rglob("*"):  # config.yaml, lineage.json, metrics, W&B files and logs
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in killed.stdout + killed.stderr + done.stdout + done.stderr
