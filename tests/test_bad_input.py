"""Every bad input is one line: exit code 2, one `error:` line naming the key or file, no traceback,
nothing new under the runs root. The entry points run as subprocesses, as a user runs them.

All cases are launched at once by a module fixture (each in its own copy of a small runs root,
hard-linked) and the parametrized tests read their results: most fail at compose or validation
time, so the matrix costs a few interpreter starts per core, not one training per case.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from solar.runs import CONF_DIR, start_run
from solar.weights.synthetic import write_random_llama

AS_NOBODY = os.geteuid() == 0 and shutil.which("setpriv") is not None

# (id, entry point, arguments, text the error must contain); {ro}, {trunc}, {data}, {file} are
# filled in by the fixture. Parents `a`, `b` (same shapes) and `c` (other shapes) are runs in the
# runs root; `dus` is a finished upscale of `a`, `merged` a finished average of a and b, `sft`
# a started training run (objective.lr=0.001).
# model.pretrained=null: SFT from the seeded tiny init (at scale=tiny its base is the run `cpt`)
TRAIN = "+ablation=sft_v1 scale=tiny logger=csv model.pretrained=null"
CASES = [
    # -- solar.train: config values (caught by the validator, before anything is loaded)
    ("train-ckpt-every-0", "train", f"{TRAIN} trainer.checkpoint_every_n_steps=0",
     "trainer.checkpoint_every_n_steps"),
    ("train-max-steps-neg", "train", f"{TRAIN} trainer.max_steps=-5", "trainer.max_steps"),
    ("train-max-steps-float", "train", f"{TRAIN} trainer.max_steps=1.5", "trainer.max_steps"),
    ("train-max-length-str", "train", f"{TRAIN} data.max_length=abc", "data.max_length"),
    ("train-micro-batch-0", "train", f"{TRAIN} data.micro_batch_size=0", "data.micro_batch_size"),
    ("train-lr-neg", "train", f"{TRAIN} objective.lr=-1", "objective.lr"),
    ("train-val-fraction", "train", f"{TRAIN} data.val_fraction=1.5", "data.val_fraction"),
    ("train-precision", "train", f"{TRAIN} trainer.precision=fp8", "trainer.precision"),
    ("train-accelerator", "train", f"{TRAIN} trainer.accelerator=quantum", "trainer.accelerator"),
    ("train-devices-0", "train", f"{TRAIN} trainer.devices=0", "trainer.devices"),
    ("train-seed-str", "train", f"{TRAIN} seed=abc", "seed"),
    ("train-logger", "train", f"{TRAIN} logger.name=tensorboard", "logger.name"),
    ("train-max-samples-0", "train", f"{TRAIN} data.sources.alpaca_gpt4.max_samples=0",
     "data.sources.alpaca_gpt4.max_samples"),
    ("dpo-beta-0", "train", "+ablation=dpo_v1 scale=tiny objective.beta=0", "objective.beta"),
    ("dpo-loss-type", "train", "+ablation=dpo_v1 scale=tiny objective.loss_type=hinge",
     "objective.loss_type"),
    ("sdpo-step-data-string", "train",
     "+ablation=sdpo scale=tiny objective.steps.0.data=orca_dpo_pairs", "objective.steps[0].data"),
    ("train-merge-ablation", "train", "+ablation=merge_v1 scale=tiny", "solar.merge"),
    # -- solar.train: the run directory and the parent
    ("train-other-settings", "train", f"{TRAIN} run.name=sft objective.lr=0.002", "objective.lr"),
    ("train-runs-is-file", "train", f"{TRAIN} paths.runs={{file}}", "paths.runs"),
    ("train-parent-missing", "train", f"{TRAIN} model.pretrained=nope", "nope"),
    ("train-parent-truncated", "train", f"{TRAIN} model.pretrained={{trunc}}", "model.safetensors"),
    ("train-parent-path-missing", "train", f"{TRAIN} model.pretrained={{data}}/no/model",
     "no/model"),
    # -- solar.train: data files (loaded before the run directory exists)
    ("train-empty-file", "train",
     f"{TRAIN} data.sources.alpaca_gpt4.data_files={{data}}/empty.jsonl", "empty.jsonl"),
    ("train-not-utf8", "train",
     f"{TRAIN} data.sources.alpaca_gpt4.data_files={{data}}/latin1.jsonl", "latin1.jsonl"),
    ("train-missing-column", "train",
     f"{TRAIN} data.sources.alpaca_gpt4.data_files={{data}}/no_output.jsonl", "output"),
    ("train-batch-larger-than-data", "train",
     f"{TRAIN} data.sources.alpaca_gpt4.data_files={{data}}/small.jsonl data.micro_batch_size=64",
     "data.micro_batch_size"),
    # -- solar.upscale
    ("upscale-m-str", "upscale", "scale=tiny model.pretrained=a upscale.m=abc", "upscale.m"),
    ("upscale-m-float", "upscale", "scale=tiny model.pretrained=a upscale.m=1.5", "upscale.m"),
    ("upscale-m-too-big", "upscale", "scale=tiny model.pretrained=a upscale.m=10 run.name=d2",
     "upscale.m"),
    ("upscale-layers-odd", "upscale", "scale=tiny model.pretrained=a upscale.layers=7 "
     "upscale.m=null run.name=d2", "upscale.layers"),
    ("upscale-shard-size", "upscale", "scale=tiny model.pretrained=a upscale.shard_size=lots",
     "upscale.shard_size"),
    ("upscale-other-settings", "upscale", "scale=tiny model.pretrained=a upscale.m=2", "upscale.m"),
    ("upscale-parent-truncated", "upscale", "scale=tiny model.pretrained={trunc} run.name=d2",
     "model.safetensors"),
    ("upscale-parent-missing", "upscale", "scale=tiny model.pretrained=nope run.name=d2", "nope"),
    ("upscale-train-ablation", "upscale", "+ablation=sft_v3", "solar.train"),
    # -- solar.merge
    ("ties-density-neg", "merge", "scale=tiny +merge=ties merge.base=a merge.models=[b] "
     "merge.density=-0.5", "merge.density"),
    ("ties-density-list", "merge", "scale=tiny +merge=ties merge.base=a merge.models=[b] "
     "merge.density=[0.5,1.5]", "merge.density"),
    ("slerp-t", "merge", "scale=tiny +merge=slerp merge.models=[a,b] merge.t=1.5", "merge.t"),
    ("dare-drop-rate-1", "merge", "scale=tiny +merge=dare merge.base=a merge.models=[b] "
     "merge.drop_rate=1", "merge.drop_rate"),
    ("merge-weights-neg", "merge", "scale=tiny +merge=average merge.models=[a,b] "
     "merge.weights=[1,-1]", "merge.weights"),
    ("merge-weights-count", "merge", "scale=tiny +merge=average merge.models=[a,b] "
     "merge.weights=[1]", "merge.weights"),
    ("merge-parent-path-missing", "merge",
     "scale=tiny +merge=average merge.models=[a,./no/model] run.name=m2", "no/model"),
    ("merge-models-string", "merge", "scale=tiny +merge=average merge.models=a run.name=m2",
     "merge.models"),
    ("slerp-one-model", "merge", "scale=tiny +merge=slerp merge.models=[a]", "merge.models"),
    ("ties-no-base", "merge", "scale=tiny +merge=ties merge.models=[a,b]", "merge.base"),
    ("merge-no-method", "merge", "scale=tiny", "+merge="),
    ("merge-shard-size", "merge", "scale=tiny +merge=average merge.models=[a,b] "
     "output.shard_size=abc", "output.shard_size"),
    ("merge-parent-missing", "merge", "scale=tiny +merge=average merge.models=[a,nope] "
     "run.name=m2", "nope"),
    ("merge-parent-truncated", "merge", "scale=tiny +merge=average merge.models=[a,{trunc}] "
     "run.name=m2", "model.safetensors"),
    ("merge-other-shapes", "merge", "scale=tiny +merge=average merge.models=[a,c] run.name=m2",
     "model.embed_tokens.weight"),
    ("merge-other-weights", "merge", "scale=tiny +merge=average merge.models=[a,b] "
     "merge.weights=[0.3,0.7] run.name=merged", "merge.weights"),
    ("merge-runs-is-file", "merge", "scale=tiny +merge=average merge.models=[a,b] "
     "paths.runs={file}", "paths.runs"),
    # -- solar.evaluate
    ("evaluate-no-model", "evaluate", "scale=tiny", "model="),
    ("evaluate-missing", "evaluate", "scale=tiny model=nope", "nope"),
    ("evaluate-truncated", "evaluate", "scale=tiny model={trunc}", "model.safetensors"),
    ("evaluate-limit-neg", "evaluate", "scale=tiny model=dus eval.limit=-1", "eval.limit"),
    ("evaluate-gsm8k-filter", "evaluate", "scale=tiny model=dus eval.gsm8k_filter=bogus",
     "eval.gsm8k_filter"),
    ("evaluate-tasks-string", "evaluate", "scale=tiny model=dus eval.tasks=winogrande_typo",
     "winogrande_typo"),
    # -- solar.contamination
    ("contamination-no-target", "contamination", "scale=tiny reference=dus", "target"),
    ("contamination-truncated", "contamination", "scale=tiny target=dus reference={trunc}",
     "model.safetensors"),
    ("contamination-n-0", "contamination", "scale=tiny target=dus reference=dus n=0", "n"),
    ("contamination-k-neg", "contamination", "scale=tiny target=dus reference=dus k=-1", "k"),
    ("contamination-prefix", "contamination",
     "scale=tiny target=dus reference=dus prefix_fraction=1.5", "prefix_fraction"),
    # -- solar.experiment (the driver: every node is validated before anything is submitted);
    # SFT rows start from the seeded init, so the graph does not reach this fixture's `dus` run
    ("experiment-unknown", "experiment", "scale=tiny experiment=table9", "table9"),
    ("experiment-launcher", "experiment", "scale=tiny experiment=table3 launcher=pbs",
     "launcher"),
    ("experiment-node-lr", "experiment",
     "scale=tiny experiment=table3 "
     "stage_overrides.train=[\"objective.lr=-1\",\"model.pretrained=null\"]", "objective.lr"),
    ("experiment-node-ckpt-every", "experiment", "scale=tiny experiment=table3 "
     "stage_overrides.train=[\"trainer.checkpoint_every_n_steps=0\",\"model.pretrained=null\"]",
     "trainer.checkpoint_every_n_steps"),
    ("experiment-resources", "experiment",
     "scale=tiny experiment=table3 resources.merge.cpus_per_task=0 "
     "stage_overrides.train=[\"model.pretrained=null\"]", "cpus_per_task"),
    # -- Hydra composition (an unknown ablation or key)
    ("train-unknown-ablation", "train", "+ablation=sft_v9 scale=tiny", "sft_v9"),
    ("train-unknown-key", "train", f"{TRAIN} trainer.max_step=5", "trainer.max_step"),
]
# Hydra's own composition errors (solar.cli.run_command exits 2): Hydra prints its message (the
# options or the key), not an `error:` line
HYDRA_COMPOSITION = {"train-unknown-ablation", "train-unknown-key"}
# a read-only runs root, per entry point that writes one (run as `nobody`: root writes anywhere)
READ_ONLY = [("train", TRAIN), ("upscale", "scale=tiny model.pretrained={trunc}"),
             ("merge", "scale=tiny +merge=average merge.models=[a,b]")]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def write_jsonl(path: Path, rows: list[dict], encoding: str = "utf-8") -> None:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
                     .encode(encoding))


@pytest.fixture(scope="module")
def results(tmp_path_factory, cache_dir):
    from solar.data.tiny.tokenizer import tiny_tokenizer

    tiny_tokenizer(cache_dir)  # built once here, not raced for by parallel cases
    # outside pytest's private tmp dir, so that `nobody` can reach it (read-only cases)
    base = Path(tempfile.mkdtemp(prefix="solar-bad-input-"))
    template = base / "template"
    tiny = template / "tiny"
    for name, kw in (("a", dict(seed=1)), ("b", dict(seed=2)), ("c", dict(seed=3, hidden=32))):
        write_random_llama(tiny / name / "model", **kw)
    env = {**os.environ, "WANDB_MODE": "offline"}
    for args in (["-m", "solar.upscale", "scale=tiny", "model.pretrained=a", "run.name=dus"],
                 ["-m", "solar.merge", "scale=tiny", "+merge=average", "merge.models=[a,b]",
                  "merge.weights=[0.5,0.5]", "run.name=merged"]):
        subprocess.run([sys.executable, *args, f"paths.runs={template}"], check=True, env=env,
                       capture_output=True)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            *TRAIN.split(), f"paths.runs={template}", "run.name=sft", "objective.lr=0.001"])
    start_run(Path(cfg.run.dir), cfg, "new")  # a started run: run.json, no checkpoint yet

    trunc = base / "truncated"
    shutil.copytree(tiny / "a" / "model", trunc)
    weights = trunc / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    data = base / "data"
    data.mkdir()
    (data / "empty.jsonl").write_text("")
    rows = [{"instruction": f"Say caf\u00e9 {i} times.", "input": "", "output": f"caf\u00e9 {i}"}
            for i in range(12)]
    write_jsonl(data / "latin1.jsonl", rows, "latin-1")
    write_jsonl(data / "small.jsonl", rows)
    write_jsonl(data / "no_output.jsonl", [{"instruction": "x", "input": ""}])
    a_file = base / "a-file"
    a_file.write_text("not a directory\n")
    before = tree(template)

    def launch(case_id: str, entry: str, args: str, read_only: bool = False) -> tuple:
        root = base / case_id
        shutil.copytree(template, root, copy_function=os.link)
        argv = args.format(trunc=trunc, data=data, file=a_file).split()
        cmd = [sys.executable, "-m", f"solar.{entry}", f"paths.runs={root}", *argv]
        if read_only:
            root.chmod(0o555)
            (root / "tiny").chmod(0o555)
            cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False,
                              cwd=base if read_only else None)
        print(f"{case_id}: {time.perf_counter() - start:.1f}s")
        return proc, tree(root)

    jobs = {c[0]: c[1:3] for c in CASES}
    if AS_NOBODY:
        base.chmod(0o755)  # nobody reads the template and data, and writes nothing
        jobs.update({f"read-only-{e}": (e, a) for e, a in READ_ONLY})
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {k: pool.submit(launch, k, e, a, k.startswith("read-only"))
                   for k, (e, a) in jobs.items()}
        yield {k: f.result() for k, f in futures.items()}, before
    shutil.rmtree(base, ignore_errors=True)


def check(results, case_id: str, must_name: str) -> None:
    (proc, after), before = results[0][case_id], results[1]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(errors) == (0 if case_id in HYDRA_COMPOSITION else 1), proc.stderr
    assert must_name in proc.stderr, proc.stderr
    assert after == before, f"left behind: {sorted(after - before)} / removed {sorted(before - after)}"


@pytest.mark.parametrize("case_id,must_name", [pytest.param(c[0], c[3], id=c[0]) for c in CASES])
def test_bad_input_is_one_error_line(results, case_id, must_name):
    check(results, case_id, must_name)


@pytest.mark.skipif(not AS_NOBODY, reason="needs root and setpriv to run as an unprivileged user")
@pytest.mark.parametrize("entry", [e for e, _ in READ_ONLY])
def test_read_only_runs_root_is_reported_as_such(results, entry):
    check(results, f"read-only-{entry}", "read-only")


def test_matrix_size():
    assert len(CASES) + len(READ_ONLY) >= 40
