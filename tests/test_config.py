"""Every ablation composes under both scales; the validator names each planted mistake."""

from __future__ import annotations


import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from solar.config import ConfigError, validate_train
from solar.runs import CONF_DIR, ablation_entry

ABLATIONS = sorted(p.stem for p in (CONF_DIR / "ablation").glob("*.yaml"))
TRAIN_ABLATIONS = [a for a in ABLATIONS if ablation_entry(a) == "train"]


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_every_ablation_file_is_a_global_delta_with_its_command():
    for name in ABLATIONS:
        lines = (CONF_DIR / "ablation" / f"{name}.yaml").read_text().splitlines()
        assert lines[0] == "# @package _global_", name
        assert any(f"+ablation={name}" in line for line in lines if line.startswith("#")), name


@pytest.mark.parametrize("scale", ["paper", "tiny"])
@pytest.mark.parametrize("ablation", TRAIN_ABLATIONS)
def test_training_ablations_compose_and_validate(ablation, scale):
    cfg = compose_train(f"+ablation={ablation}", f"scale={scale}")
    OmegaConf.resolve(cfg)
    validate_train(cfg)
    assert cfg.run.name == ablation
    assert cfg.run.dir == f"{cfg.paths.runs}/{scale}/{ablation}"
    assert cfg.model.name == ("tiny" if scale == "tiny" else cfg.model.name)


def test_sft_v3_mixture_and_scales():
    paper = compose_train("+ablation=sft_v3")
    assert list(paper.data.sources) == ["alpaca_gpt4", "openorca", "synth_math_instruct"]
    assert paper.data.sources.openorca.max_samples == 100000
    assert paper.data.sources.synth_math_instruct.hub_id == "meta-math/MetaMathQA"
    assert paper.model.pretrained == "upstage/SOLAR-10.7B-v1.0"
    assert paper.scale.world == "hub" and paper.trainer.precision == "bf16-mixed"
    tiny = compose_train("+ablation=sft_v3", "scale=tiny")
    # the solar_10_7b role at tiny scale: the tiny world's own DUS + CPT run (conf/role/)
    assert tiny.model.pretrained == "cpt" and tiny.scale.world == "tiny"
    assert tiny.trainer.accelerator == "cpu" and tiny.data.max_length == 128
    v4 = compose_train("+ablation=sft_v4")
    assert list(v4.data.sources) == ["alpaca_gpt4", "synth_math_instruct"]


def test_unknown_ablation_lists_the_options():
    with pytest.raises(Exception, match="sft_v3"):
        compose_train("+ablation=sft_v9")


def test_validator_collects_every_planted_mistake():
    cfg = compose_train("+ablation=sft_v3", "scale=tiny")
    with open_dict(cfg):
        cfg.data.max_length = 0
        cfg.objective.lr = -1.0
        cfg.data.sources.openorca.schema = "nope"
        cfg.data.sources.alpaca_gpt4.hub_id = None
        cfg.logger.name = "tensorboard"
        cfg.data.val_fraction = 1.5
    with pytest.raises(ConfigError) as err:
        validate_train(cfg)
    text = str(err.value)
    for key in ("data.max_length", "objective.lr", "data.sources.openorca.schema",
                "data.sources.alpaca_gpt4", "logger.name", "data.val_fraction"):
        assert f"`{key}" in text, key
    assert len(err.value.errors) == 6


def test_cpt_objective_refuses_instruction_data():
    cfg = compose_train("+ablation=cpt", "scale=tiny", "data=[alpaca_gpt4]")
    with pytest.raises(ConfigError, match="data.sources.alpaca_gpt4.*cannot train on schema"):
        validate_train(cfg)


def test_dpo_ablations_parents_data_and_scales():
    for scale, lr in (("paper", 5e-7), ("tiny", 5e-4)):
        v1 = compose_train("+ablation=dpo_v1", f"scale={scale}")
        assert list(v1.data.sources) == ["ultrafeedback_clean"] and v1.model.pretrained == "sft_v3"
        assert v1.objective.name == "dpo" and v1.objective.lr == lr and v1.objective.beta == 0.01
        cand_1 = compose_train("+ablation=cand_1", f"scale={scale}")
        assert list(cand_1.data.sources) == ["ultrafeedback_clean", "synth_math_alignment"]
        assert cand_1.objective.beta == 0.1 and cand_1.objective.lr == lr
        assert cand_1.run.name == "cand_1" and cand_1.model.pretrained == "sft_v3"
        cand_2 = compose_train("+ablation=cand_2", f"scale={scale}")
        assert cand_2.model.pretrained == "sft_v3_v4" and cand_2.objective.beta == 0.1
    sdpo = compose_train("+ablation=sdpo")
    assert [list(s.data) for s in sdpo.objective.steps] == [
        ["orca_dpo_pairs"], ["ultrafeedback_clean", "synth_math_alignment"]]
    assert sdpo.data.sources.synth_math_alignment.solutions.hub_id == "EleutherAI/hendrycks_math"
    assert compose_train("+ablation=sft_v3", "scale=tiny").objective.lr == 1e-3


def test_validator_names_preference_mistakes():
    cfg = compose_train("+ablation=sdpo", "scale=tiny")
    with open_dict(cfg):
        cfg.objective.beta = 0.0
        cfg.objective.loss_type = "hinge"
        cfg.objective.label_smoothing = 0.7
        cfg.objective.reference = "none"
        cfg.objective.steps[1].data = ["ultrafeedback_clean", "nope"]
        cfg.data.sources.synth_math_alignment.solutions.hub_id = None
    with pytest.raises(ConfigError) as err:
        validate_train(cfg)
    for key in ("objective.beta", "objective.loss_type", "objective.label_smoothing",
                "objective.reference", "objective.steps[1].data",
                "data.sources.synth_math_alignment.solutions"):
        assert f"`{key}" in str(err.value), key
    sft_on_pairs = compose_train("+ablation=sft_v1", "scale=tiny", "data=[orca_dpo_pairs]")
    with pytest.raises(ConfigError, match="objective 'sft' cannot train on schema"):
        validate_train(sft_on_pairs)


def test_missing_dpo_parent_prints_the_command_that_makes_it(tmp_path):
    from solar.runs import MissingParentError, resolve_model
    with pytest.raises(MissingParentError) as err:
        resolve_model("sft_v3", tmp_path, "tiny")
    assert "python -m solar.train +ablation=sft_v3 scale=tiny" in str(err.value)
    with pytest.raises(MissingParentError, match="python -m solar.merge \\+ablation=sft_v3_v4"):
        resolve_model("sft_v3_v4", tmp_path, "tiny")
