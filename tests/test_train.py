"""The tiny SFT v3 run end to end: exact first losses, falling loss, HF reload, exact resume."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

from solar.objectives.sft import SFTModule
from solar.runs import CONF_DIR, RunDirError
from solar.train import train

# First three optimizer-step losses of the tiny SFT v3 run below (seed 42, CPU fp32). Regenerate
# with `pytest tests/test_train.py -k exact -s` and update only for an intended numeric change.
EXPECTED_FIRST_LOSSES = [7.3286, 6.7537, 6.3325]


def tiny_sft_v3(runs, *extra):
    overrides = ["+ablation=sft_v3", "scale=tiny", f"paths.runs={runs}", "logger=csv",
                 "model.pretrained=null",  # from the seeded tiny init: no CPT parent needed
                 "trainer.max_steps=12", "trainer.checkpoint_every_n_steps=6",
                 "data.micro_batch_size=4", "data.grad_accum=2", "objective.warmup_steps=2",
                 *[f"data.sources.{s}.max_samples=300" for s in
                   ("alpaca_gpt4", "openorca", "synth_math_instruct")], *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture
def record_losses(monkeypatch):
    losses: list[float] = []
    original = SFTModule.training_step

    def step(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        losses.append(round(float(loss), 4))
        return loss

    monkeypatch.setattr(SFTModule, "training_step", step)
    return losses


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir):
    """One uninterrupted 12-step run, shared by the tests below."""
    runs = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    losses: list[float] = []
    original = SFTModule.training_step
    mp.setattr(SFTModule, "training_step",
               lambda self, b, i: losses.append(float(original(self, b, i))) or torch.tensor(0.0))
    try:
        model_dir = train(tiny_sft_v3(runs))
    finally:
        mp.undo()
    return runs, model_dir, losses


def test_exact_first_losses_and_loss_falls(finished_run):
    _, _, losses = finished_run
    print("losses:", [round(x, 4) for x in losses])
    assert len(losses) == 12
    assert [round(x, 4) for x in losses[:3]] == pytest.approx(EXPECTED_FIRST_LOSSES, abs=2e-4)
    assert sum(losses[-3:]) / 3 < losses[0] - 1.0


def test_run_dir_contents_and_hf_reload(finished_run):
    runs, model_dir, _ = finished_run
    run_dir = model_dir.parent
    assert run_dir == runs / "tiny" / "sft_v3"
    assert {"config.yaml", "git_sha", "lineage.json", "checkpoints", "model"} <= \
        {p.name for p in run_dir.iterdir()}
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list(model_dir.glob("*.safetensors")) and not list(model_dir.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 3?"}],
                                     tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("### User:\nWhat is 2 plus 3?\n\n### Assistant:\n")
    ids = tok("<s>" + prompt, add_special_tokens=False, return_tensors="pt").input_ids
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    reference = AutoModelForCausalLM.from_config(model.config)
    reference.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference.eval()(ids).logits)


def test_rerun_of_a_finished_run_returns_it_and_other_settings_refuse(finished_run):
    runs, model_dir, _ = finished_run
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert train(tiny_sft_v3(runs)) == model_dir  # same settings: nothing to do, nothing touched
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(RunDirError, match=r"objective.lr: 0.001 -> 0.002(.|\n)*run.overwrite=true"):
        train(tiny_sft_v3(runs, "objective.lr=0.002"))


def test_interrupted_run_resumes_to_the_same_losses(finished_run, tmp_path, record_losses):
    _, _, reference = finished_run
    crash_at = 8

    original = SFTModule.training_step

    def crashing(self, batch, batch_idx):
        if self.global_step == crash_at:
            raise RuntimeError("simulated node failure")
        return original(self, batch, batch_idx)

    mp = pytest.MonkeyPatch()
    mp.setattr(SFTModule, "training_step", crashing)
    with pytest.raises(RuntimeError, match="simulated node failure"):
        train(tiny_sft_v3(tmp_path))
    mp.undo()
    assert not (tmp_path / "tiny" / "sft_v3" / "model").exists()  # nothing half written
    record_losses.clear()
    train(tiny_sft_v3(tmp_path))  # resumes from step 6 (last checkpoint)
    assert len(record_losses) == 6
    assert record_losses == pytest.approx([round(x, 4) for x in reference[6:]], abs=2e-4)
