"""Tiny alignment runs end to end: DPO v2 from a tiny SFT v3 run, and sDPO's steps and resume."""

from __future__ import annotations

import csv
import json

import pytest
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from solar.objectives.dpo import DPOModule
from solar.objectives.reference import file_sha256
from solar.runs import CONF_DIR
from solar.train import train


def compose_tiny(runs, *overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[
            "scale=tiny", f"paths.runs={runs}", "logger=csv", *overrides])


@pytest.fixture(scope="module")
def sft_runs(tmp_path_factory, cache_dir):
    """runs/tiny/sft_v3: a short tiny SFT v3 run, the parent every DPO ablation names."""
    runs = tmp_path_factory.mktemp("runs")
    train(compose_tiny(runs, "+ablation=sft_v3", "model.pretrained=null", "trainer.max_steps=60",
                       "trainer.checkpoint_every_n_steps=60",
                       *[f"data.sources.{s}.max_samples=600" for s in
                         ("alpaca_gpt4", "openorca", "synth_math_instruct")]))
    return runs


def metrics(run_dir):
    return list(csv.DictReader(open(run_dir / "metrics" / "metrics.csv")))


def test_tiny_dpo_v2_learns_the_held_out_preferences(sft_runs):
    model = train(compose_tiny(
        sft_runs, "+ablation=dpo_v2", "trainer.max_steps=60", "trainer.checkpoint_every_n_steps=30",
        "data.val_fraction=0.1", "data.sources.ultrafeedback_clean.max_samples=600",
        "data.sources.synth_math_alignment.max_samples=300"))
    run_dir = model.parent
    lineage = json.loads((run_dir / "lineage.json").read_text())
    assert lineage["parents"] == ["sft_v3"] and lineage["method"] == "dpo"
    parent_model = sft_runs / "tiny" / "sft_v3" / "model"
    assert lineage["reference_weights"]["model.safetensors"] == \
        file_sha256(parent_model / "model.safetensors")
    val = [r for r in metrics(run_dir) if r.get("val/rewards/accuracies")]
    print("val rewards/accuracies by step:",
          [(r["step"], round(float(r["val/rewards/accuracies"]), 3)) for r in val])
    assert [int(r["step"]) for r in val] == [29, 59]
    assert float(val[-1]["val/rewards/accuracies"]) > 0.6  # ~90 held-out pairs
    assert float(val[-1]["val/rewards/margins"]) > 0
    train_rows = [r for r in metrics(run_dir) if r.get("train/rewards/chosen")]
    assert {"train/rewards/rejected", "train/rewards/margins", "train/logps/chosen",
            "train/logps/rejected", "train/loss", "tokens_per_s", "pairs_per_s"} <= {
        k for k, v in train_rows[-1].items() if v}


SDPO = ["+ablation=sdpo", "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=3",
        "data.val_fraction=0", "data.sources.orca_dpo_pairs.max_samples=200",
        "data.sources.ultrafeedback_clean.max_samples=100",
        "data.sources.synth_math_alignment.max_samples=100"]


@pytest.fixture(scope="module")
def sdpo_run(sft_runs):
    return train(compose_tiny(sft_runs, *SDPO))


def test_sdpo_step_two_reference_is_step_one_output(sdpo_run, sft_runs):
    run_dir = sdpo_run.parent
    step1, step2 = run_dir / "steps" / "1-orca", run_dir / "steps" / "2-ultrafeedback_math"
    l1 = json.loads((step1 / "lineage.json").read_text())
    l2 = json.loads((step2 / "lineage.json").read_text())
    sft_model = sft_runs / "tiny" / "sft_v3" / "model"
    assert l1["reference_weights"]["model.safetensors"] == file_sha256(
        sft_model / "model.safetensors")
    assert l2["reference"] == str(step1 / "model") and l2["parents"] == [str(step1 / "model")]
    assert l2["reference_weights"]["model.safetensors"] == file_sha256(
        step1 / "model" / "model.safetensors")  # byte-identical to step 1's output
    assert sorted(l1["data"]["sources"]) == ["orca_dpo_pairs"]
    assert sorted(l2["data"]["sources"]) == ["synth_math_alignment", "ultrafeedback_clean"]
    assert file_sha256(sdpo_run / "model.safetensors") == file_sha256(
        step2 / "model" / "model.safetensors")
    assert json.loads((run_dir / "sdpo_order.json").read_text())["steps"] == [
        "orca", "ultrafeedback_math"]


def test_sdpo_resumes_mid_run_at_the_right_step(sdpo_run, sft_runs, tmp_path, monkeypatch):
    import shutil
    runs = tmp_path / "runs"
    shutil.copytree(sft_runs / "tiny" / "sft_v3", runs / "tiny" / "sft_v3")
    calls: list[tuple[str, int]] = []
    original = DPOModule.training_step

    def crashing(self, batch, batch_idx):
        step_dir = self.trainer.default_root_dir
        calls.append((self.trainer.checkpoint_callback.dirpath, self.global_step))
        if "2-ultrafeedback_math" in self.trainer.checkpoint_callback.dirpath and \
                self.global_step == 4:
            raise RuntimeError(f"simulated crash in {step_dir}")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DPOModule, "training_step", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_tiny(runs, *SDPO))
    assert [s for _, s in calls] == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4]
    assert (runs / "tiny" / "sdpo" / "steps" / "1-orca" / "model").is_dir()
    assert not (runs / "tiny" / "sdpo" / "model").exists()
    calls.clear()
    monkeypatch.setattr(DPOModule, "training_step", original)
    monkeypatch.setattr(DPOModule, "training_step", lambda self, b, i: calls.append(
        (self.trainer.checkpoint_callback.dirpath, self.global_step)) or original(self, b, i))
    final = train(compose_tiny(runs, *SDPO))
    assert [s for _, s in calls] == [3, 4, 5]  # step 1 skipped, step 2 from its step-3 checkpoint
    assert all("2-ultrafeedback_math" in d for d, _ in calls)
    resumed, uninterrupted = load_file(final / "model.safetensors"), load_file(
        sdpo_run / "model.safetensors")
    for name, tensor in uninterrupted.items():
        assert (resumed[name] - tensor).abs().max() < 1e-5, name


def test_easy_to_hard_orders_the_steps_by_the_sft_models_preference(sft_runs, tmp_path):
    from solar.modeling import load_tokenizer
    from solar.sdpo import step_order
    cfg = compose_tiny(sft_runs, *SDPO, "objective.order=easy_to_hard")
    parent = str(sft_runs / "tiny" / "sft_v3" / "model")
    order = step_order(cfg, tmp_path, parent, load_tokenizer(parent, cfg.paths.cache))
    saved = json.loads((tmp_path / "sdpo_order.json").read_text())
    scores = saved["chosen_preference"]
    assert set(scores) == {"orca", "ultrafeedback_math"} and all(0 <= v <= 1 for v in
                                                                   scores.values())
    names = [cfg.objective.steps[i].name for i in order]
    assert scores[names[0]] >= scores[names[1]] and saved["steps"] == names
    # the stored order wins on a rerun (a resumed run keeps its curriculum)
    (tmp_path / "sdpo_order.json").write_text(json.dumps({"order": [1, 0]}))
    assert step_order(cfg, tmp_path, parent, None) == [1, 0]
