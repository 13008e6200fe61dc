"""The experiment graph (derived from the ablation configs), its plan, the local launcher, and every
bad input of the driver: one `error:` line, exit 2, nothing written, nothing submitted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from solar.pipeline.graph import GraphBuilder, GraphError, load_experiment, topological
from solar.runs import CONF_DIR

EXPERIMENTS = CONF_DIR.parent / "experiments"


def graph(rows_or_experiment, scale="tiny", runs=Path("/nonexistent-runs"), **kwargs):
    """Nodes of an experiment (name) or of some rows (list), as solar.experiment builds them."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        builder = GraphBuilder(lambda entry, args: compose(config_name=entry, overrides=args),
                               scale=scale, runs_root=runs, cache=Path("/tmp/cache"), **kwargs)
        if isinstance(rows_or_experiment, str):
            tables, extra = load_experiment(rows_or_experiment, EXPERIMENTS)
            rows = [r for _, t in tables for r in t] + extra
        else:
            rows, tables = rows_or_experiment, []
        for row in rows:
            builder.add_row(row)
        for table, table_rows in tables:
            builder.add_report(table, table_rows)
    return {n.name: n for n in topological(builder.nodes)}


def test_table3_graph_is_read_off_the_ablation_configs():
    nodes = graph("table3")
    # the SFT base (the solar_10_7b role, conf/role/): at scale=tiny the tiny world's DUS + CPT
    # runs, nodes of the graph; at scale=paper the published model, no node
    for row in ("sft_v1", "sft_v2", "sft_v3", "sft_v4"):
        assert nodes[row].parents == ["cpt"]
    assert nodes["cpt"].parents == ["dus"] and nodes["dus"].parents == []
    paper = graph("table3", scale="paper")
    assert "cpt" not in paper and "dus" not in paper and paper["sft_v1"].parents == []
    assert nodes["sft_v3_v4"].parents == ["sft_v3", "sft_v4"]
    assert nodes["sft_v3_v4"].stage == "merge"
    for row in ("sft_v1", "sft_v2", "sft_v3", "sft_v4", "sft_v3_v4"):
        assert nodes[f"eval:{row}"].parents == [row]
        assert nodes[f"eval:{row}"].argv[3] == f"model={row}"
    report = nodes["report:table3"]
    assert report.after_any and report.argv[2:4] == ["solar.report", "table=3"]
    assert sorted(report.parents) == sorted(f"eval:{r}" for r in
                                            ("sft_v1", "sft_v2", "sft_v3", "sft_v4", "sft_v3_v4"))
    order = list(nodes)   # topological: every parent before its children
    for node in nodes.values():
        assert all(order.index(p) < order.index(node.name) for p in node.parents)


def test_paper_graph_chains_every_table():
    nodes = graph("paper")
    models = [n for n in nodes.values() if n.stage in ("upscale", "train", "merge")]
    assert {n.name for n in models} == {
        "dus", "cpt", "sft_v1", "sft_v2", "sft_v3", "sft_v4", "sft_v3_v4", "dpo_v1", "dpo_v2",
        "dpo_v1_v2", "dpo_v3", "cand_1", "cand_2", "merge_v1", "merge_v2", "merge_v3", "merge_v4",
        "sdpo"}
    assert nodes["cpt"].parents == ["dus"] and nodes["dus"].stage == "upscale"
    assert nodes["dpo_v3"].parents == ["sft_v3_v4"]
    assert nodes["cand_2"].parents == ["sft_v3_v4"]
    assert nodes["merge_v4"].parents == ["cand_1", "cand_2"]
    assert sum(n.stage == "evaluate" for n in nodes.values()) == len(models)
    assert sum(n.stage == "report" for n in nodes.values()) == 6


def test_overrides_reach_the_right_nodes():
    nodes = graph(["sft_v3_v4"], overrides=["++seed=7"],
                  stage_overrides={"train": ["trainer.max_steps=5"]},
                  row_overrides={"sft_v4": ["data.max_length=64"]})
    assert "++seed=7" in nodes["sft_v3_v4"].argv and nodes["sft_v3"].config.seed == 7
    assert "trainer.max_steps=5" in nodes["sft_v3"].argv
    assert "trainer.max_steps=5" not in nodes["sft_v3_v4"].argv
    assert "data.max_length=64" in nodes["sft_v4"].argv
    assert "data.max_length=64" not in nodes["sft_v3"].argv
    assert nodes["sft_v4"].config.data.max_length == 64   # composed exactly as it will run


def test_a_cycle_and_an_unproduced_parent_are_named():
    with pytest.raises(GraphError, match="cycle in the experiment graph: dpo_v1 -> sft_v3 -> "
                                         "dpo_v1"):
        graph(["dpo_v1"], row_overrides={"sft_v3": ["model.pretrained=dpo_v1"]})
    with pytest.raises(GraphError, match=r"node 'dpo_v1': parent 'my_sft' \(`model.pretrained`\)"):
        graph(["dpo_v1"], row_overrides={"dpo_v1": ["model.pretrained=my_sft"]})


def test_finished_nodes_are_skipped(tmp_path):
    from solar.runs import run_record, write_json

    model = tmp_path / "tiny" / "sft_v3" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    write_json(model.parent / "run.json", run_record(graph(["sft_v3"])["sft_v3"].config))
    (model.parent / "eval").mkdir()
    (model.parent / "eval" / "h6.json").write_text("{}")
    nodes = graph(["sft_v3_v4"], runs=tmp_path)
    assert nodes["sft_v3"].done and not nodes["sft_v4"].done
    assert nodes["sft_v3_v4"].parents == ["sft_v3", "sft_v4"]   # still ordered after both


def solar(module, *args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_dry_run_prints_the_plan_and_submits_nothing(tmp_path):
    out = solar("solar.experiment", "experiment=table3", "scale=tiny", f"paths.runs={tmp_path}",
                "launcher=local", "dry_run=true")
    assert out.returncode == 0, out.stderr
    assert "dry run: nothing submitted" in out.stdout
    assert "sft_v3_v4          merge    run              after: sft_v3,sft_v4" in out.stdout
    assert f"python -m solar.merge +ablation=sft_v3_v4 scale=tiny paths.runs={tmp_path}" \
        in out.stdout
    assert list(tmp_path.iterdir()) == []


BAD_INPUTS = [
    (["experiment=table9"], "unknown experiment 'table9'"),
    (["experiment=table3", "launcher=slurm"], "`launcher`=slurm but `sbatch` is not on PATH"),
    (["experiment=table3", "launcher=pbs"], "`launcher` must be slurm, local or auto"),
    (["experiment=table4", '+row_overrides.sft_v3=["model.pretrained=dpo_v1"]'],
     "cycle in the experiment graph: dpo_v1 -> sft_v3 -> dpo_v1"),
    (["experiment=table4", '+row_overrides.dpo_v1=["model.pretrained=nobody_made_this"]'],
     "parent 'nobody_made_this' (`model.pretrained`) is produced by no ablation"),
    (["experiment=table3", '+row_overrides.sft_v2=["trainer.devices=2"]'],
     "node 'sft_v2': `resources.train.tasks_per_node`=1 but `trainer.devices`=2"),
    (["experiment=table3", "resources.merge.cpus_per_task=0"],
     "node 'sft_v3_v4': `resources.*.cpus_per_task` must be an integer > 0"),
    (["experiment=table3", "launcher=local", "local_cpus=0"],
     "`local_cpus` must be auto or an integer > 0 (got 0)"),
    (["experiment=table3", 'stage_overrides.train=["objective.lr=-1"]'],
     "node 'sft_v1': `objective.lr` must be > 0"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[a[0][-1][:40] for a in BAD_INPUTS])
def test_bad_input_is_one_error_and_nothing_written(tmp_path, args, message):
    env = {"PATH": str(tmp_path)} if "launcher=slurm" in args else None  # no sbatch there
    out = solar("solar.experiment", "scale=tiny", f"paths.runs={tmp_path / 'runs'}", *args,
                env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_row_is_named(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("table: 3\nrows: [sft_v1, not_an_ablation]\n")
    out = solar("solar.experiment", f"experiment={exp}", "scale=tiny", "dry_run=true",
                f"paths.runs={tmp_path / 'runs'}")
    assert out.returncode == 2
    assert "row 'not_an_ablation' is produced by no ablation" in out.stderr


@pytest.mark.slow
def test_local_launcher_runs_the_graph_in_order_and_cancels_after_a_failure(tmp_path,
                                                                            cache_dir):
    """A merge of two short SFT runs, here: the merge starts after both; then a rerun where one
    parent fails cancels the merge and its evaluation, and solar.status says so."""
    exp = tmp_path / "merge_only.yaml"
    exp.write_text("rows: [sft_v3_v4]\n")
    runs = tmp_path / "runs"
    common = [f"experiment={exp}", "scale=tiny", f"paths.runs={runs}", "launcher=local",
              "evaluate=false", 'stage_overrides.train=["trainer.max_steps=4","logger=csv",'
              '"trainer.checkpoint_every_n_steps=4","model.pretrained=null"]']  # no cpt parent
    out = solar("solar.experiment", *common)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line.split("]")[1].split(":")[0].strip() for line in out.stdout.splitlines()
             if line.startswith("[")]
    assert lines == ["sft_v3", "sft_v4", "sft_v3_v4"]
    plan = json.loads((runs / "tiny" / "experiments" / "merge_only" / "plan.json").read_text())
    assert [n["state"] for n in plan["nodes"]] == ["done", "done", "done"]
    assert (runs / "tiny" / "sft_v3_v4" / "model" / "config.json").is_file()

    again = solar("solar.experiment", *common)   # everything finished: nothing runs
    assert again.returncode == 0 and "[1/" not in again.stdout
    assert "3 of 3 node(s) done" in again.stdout

    fail_runs = tmp_path / "runs-fail"
    failing = [c if not c.startswith("paths.runs=") else f"paths.runs={fail_runs}"
               for c in common]
    out = solar("solar.experiment", *failing,
                '+row_overrides.sft_v4=["data.sources.alpaca_gpt4.data_files=/nonexistent.jsonl"]')
    assert out.returncode == 1
    assert "sft_v3_v4: cancelled (sft_v4 failed)" in out.stdout
    status = solar("solar.status", f"experiment={exp}", "scale=tiny", f"paths.runs={fail_runs}")
    rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.startswith("  ")}
    assert " done " in rows["sft_v3"]
    assert " failed " in rows["sft_v4"] and "log: " in rows["sft_v4"]
    assert "cancelled" in rows["sft_v3_v4"] and "parent sft_v4 failed" in rows["sft_v3_v4"]


def test_sweep_members_are_named_after_the_swept_values(tmp_path):
    """Inside a Hydra multirun job: only the swept keys enter the run name (from multirun.yaml)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    sweep = ["+ablation=dpo_v2", "objective.beta=0.01,0.1", "trainer.max_steps=5", "scale=tiny"]
    OmegaConf.save({"hydra": {"overrides": {"task": sweep}}}, tmp_path / "multirun.yaml")
    member = ["+ablation=dpo_v2", "objective.beta=0.1", "trainer.max_steps=5", "scale=tiny"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="train", overrides=member, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode, cfg.hydra.sweep.dir = RunMode.MULTIRUN, str(tmp_path)
        cfg.hydra.overrides.task = member
    HydraConfig.instance().set_config(cfg)
    try:
        assert cfg.run.name == "dpo_v2-beta0.1"
        assert cfg.run.dir.endswith("/tiny/dpo_v2-beta0.1")
        (tmp_path / "multirun.yaml").unlink()   # unreadable: every non-neutral key counts
        assert cfg.run.name == "dpo_v2-beta0.1-max_steps5"
    finally:
        HydraConfig.instance().cfg = None


def test_a_finished_run_made_with_other_settings_is_not_skipped_silently(tmp_path):
    """Skipping means 'finished for the same config' (run.json fingerprint): a run made with other
    settings stops the plan with the keys that differ and the two ways out."""
    from solar.runs import run_record, write_json

    nodes = graph(["sft_v1"], runs=tmp_path, stage_overrides={"train": ["trainer.max_steps=7"]})
    run = tmp_path / "tiny" / "sft_v1"
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.safetensors").write_bytes(b"")
    write_json(run / "run.json", run_record(nodes["sft_v1"].config))
    assert graph(["sft_v1"], runs=tmp_path,
                 stage_overrides={"train": ["trainer.max_steps=7"]})["sft_v1"].done
    with pytest.raises(GraphError, match=r"(?s)node .sft_v1.: .* trainer.max_steps: 7 -> 150"
                                         r".*run.overwrite=true"):
        graph(["sft_v1"], runs=tmp_path)
