"""Several processes on CPU (Lightning DDP over gloo): real ranks, real `python -m solar.train`.

2 ranks x b rows per micro-batch must train exactly like 1 rank x 2b rows (same global batch and
data order): the same loss at every step and the same final weights, within fp32 round-off
(the reductions run in a different order). Tolerances: loss 1e-5 per step; weights 5e-5, 0.2% of
the most AdamW can move a weight in 8 steps at lr 3e-3 (Adam's m/sqrt(v) magnifies round-off
in weights whose gradient is ~0; measured: SFT loss 5e-7, weights 5e-6; DPO below). A killed DDP run resumes to the same losses; the
model is exported once, by rank 0; metrics are written once; DPO's reference precompute is split
over the ranks and caches what one rank computes. FSDP cannot run on CPU (solar/distributed.py),
so the export path it shares with DDP is checked here and the GPU test covers the rest.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parent.parent
HOOK = Path(__file__).resolve().parent / "ddp_hook"  # per-step losses, kill at a step
STEPS, EVERY = 8, 4
SFT = ["+ablation=sft_v3", "model.pretrained=null", *[f"data.sources.{s}.max_samples=200" for s in
                             ("alpaca_gpt4", "openorca", "synth_math_instruct")]]
DPO = ["+ablation=dpo_v2", "data.max_length=96", "objective.warmup_steps=2",
       "data.sources.ultrafeedback_clean.max_samples=120",
       "data.sources.synth_math_alignment.max_samples=60"]


def train(runs: Path, record: Path, args: list[str], ranks: int, b: int,
          kill_at: int | None = None) -> subprocess.CompletedProcess:
    """One `python -m solar.train` over `ranks` processes, b rows (pairs) per micro-batch each."""
    record.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HOOK), str(REPO)]),
           "SOLAR_TEST_RECORD": str(record), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("SOLAR_TEST_KILL_AT", None)
    if kill_at is not None:
        env["SOLAR_TEST_KILL_AT"] = str(kill_at)
    cmd = [sys.executable, "-m", "solar.train", *args, "scale=tiny", f"paths.runs={runs}",
           "logger=csv", f"trainer.max_steps={STEPS}", f"trainer.checkpoint_every_n_steps={EVERY}",
           "trainer.log_every_n_steps=1", f"data.micro_batch_size={b}", "data.grad_accum=2",
           "trainer.accelerator=cpu", f"trainer.devices={ranks}",
           f"trainer.strategy={'ddp' if ranks > 1 else 'auto'}"]
    # own process group: the kill hook takes down every rank and nothing else
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
                          start_new_session=True, check=False)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def losses(record: Path, rank: int = 0) -> dict[int, float]:
    rows = [json.loads(x) for x in (record / f"losses.rank{rank}.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(model_dir.glob("*.safetensors")) for k, v in load_file(f).items()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((torch.as_tensor(a[k]) - torch.as_tensor(b[k])).abs().max()) for k in a)


@pytest.fixture(scope="module")
def sft(tmp_path_factory, cache_dir):
    """SFT v3: 1 rank x 4 rows, 2 ranks x 2 rows, and a 2-rank run killed at step 6."""
    root = tmp_path_factory.mktemp("ddp")
    one = ok(train(root / "one", root / "rec-one", SFT, ranks=1, b=4))
    two = ok(train(root / "two", root / "rec-two", SFT, ranks=2, b=2))
    return root, one, two


def test_two_ranks_train_like_one_rank_with_twice_the_rows(sft):
    root, _, _ = sft
    one, two = losses(root / "rec-one"), losses(root / "rec-two")
    assert sorted(one) == sorted(two) == list(range(STEPS))
    assert losses(root / "rec-two", rank=1) == two  # the logged loss is the global one
    loss_diff = max(abs(one[s] - two[s]) for s in one)
    w_one = weights(root / "one" / "tiny" / "sft_v3" / "model")
    w_two = weights(root / "two" / "tiny" / "sft_v3" / "model")
    weight_diff = max_diff(w_one, w_two)
    print(f"DDP SFT: max loss diff per step {loss_diff:.2e}, max weight diff {weight_diff:.2e}; "
          f"losses {[round(one[s], 4) for s in sorted(one)]}")
    assert loss_diff < 1e-5
    assert weight_diff < 5e-5
    assert one[STEPS - 1] < one[0] - 0.5  # it trained


def test_ddp_exports_once_from_rank0_and_it_reloads(sft):
    root, _, two = sft
    run = root / "two" / "tiny" / "sft_v3"
    assert two.stdout.count("model: ") == 1  # rank 0 only
    assert [p.name for p in run.parent.iterdir()] == ["sft_v3"]  # no temp dir left by a rank
    exported = weights(run / "model")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert max_diff(exported, {k.removeprefix("model."): v for k, v in ckpt.items()}) == 0
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert "sdpa_packed" not in (run / "model" / "config.json").read_text()
    ids = torch.tensor([[1, 5, 9, 14]])
    assert torch.isfinite(model(ids).logits).all()


def test_metrics_written_once_and_val_loss_equal_to_one_rank(sft):
    root, _, _ = sft

    def rows(name):
        with open(root / name / "tiny" / "sft_v3" / "metrics" / "metrics.csv") as f:
            return list(csv.DictReader(f))

    two = rows("two")
    steps = [r["step"] for r in two if r.get("train/loss")]
    assert len(steps) == STEPS and len(set(steps)) == STEPS  # one row per step, not per rank
    val = [float(r["val/loss"]) for r in two if r.get("val/loss")]
    val_one = [float(r["val/loss"]) for r in rows("one") if r.get("val/loss")]
    assert len(val) == STEPS // EVERY and val == pytest.approx(val_one, abs=1e-5)


def test_killed_ddp_run_resumes_to_the_same_losses(sft):
    root, _, _ = sft
    runs, record = root / "killed", root / "rec-killed"
    proc = train(runs, record, SFT, ranks=2, b=2, kill_at=6)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (runs / "tiny" / "sft_v3" / "model").exists()
    (record / "losses.rank0.jsonl").unlink()
    ok(train(runs, record, SFT, ranks=2, b=2))  # resumes from the step-4 checkpoint
    resumed, reference = losses(record), losses(root / "rec-two")
    assert sorted(resumed) == list(range(EVERY, STEPS))
    assert max(abs(resumed[s] - reference[s]) for s in resumed) < 1e-6
    assert max_diff(weights(runs / "tiny" / "sft_v3" / "model"),
                    weights(root / "two" / "tiny" / "sft_v3" / "model")) < 1e-6


def test_cpt_and_dpo_under_ddp(sft):
    """CPT (tiny init) trains under DDP; DPO from the SFT model: 2 ranks x b == 1 rank x 2b, and
    the reference log-probs computed half per rank cache what one rank computes."""
    root, _, _ = sft
    cpt = ["+ablation=cpt", "model.pretrained=null", "data.max_length=96",
           "data.sources.cpt_corpus.max_samples=200"]
    ok(train(root / "cpt-two", root / "rec-cpt-two", cpt, ranks=2, b=2))
    cpt_losses = losses(root / "rec-cpt-two")
    assert cpt_losses == losses(root / "rec-cpt-two", rank=1) and sorted(cpt_losses) == \
        list(range(STEPS))
    assert cpt_losses[STEPS - 1] < cpt_losses[0] - 0.5
    assert (root / "cpt-two" / "tiny" / "cpt" / "model" / "config.json").is_file()

    dpo = [*DPO, f"model.pretrained={root / 'two' / 'tiny' / 'sft_v3' / 'model'}"]
    cache = Path(os.environ["SOLAR_CACHE"]) / "ref_logps"
    before = set(cache.glob("*.safetensors"))  # the session's cache: other tests' DPO runs too
    ok(train(root / "dpo-two", root / "rec-dpo-two", dpo, ranks=2, b=2))
    (two_cache,) = set(cache.glob("*.safetensors")) - before  # set aside: 1 rank must recompute it
    two_cache = two_cache.rename(cache.parent / "ref_logps_two_ranks.safetensors")
    ok(train(root / "dpo-one", root / "rec-dpo-one", dpo, ranks=1, b=4))
    one, two = losses(root / "rec-dpo-one"), losses(root / "rec-dpo-two")
    loss_diff = max(abs(one[s] - two[s]) for s in one)
    weight_diff = max_diff(weights(root / "dpo-one" / "tiny" / "dpo_v2" / "model"),
                           weights(root / "dpo-two" / "tiny" / "dpo_v2" / "model"))
    (one_cache,) = set(cache.glob("*.safetensors")) - before
    a, b = load_file(one_cache), load_file(two_cache)
    print(f"DDP DPO: max loss diff per step {loss_diff:.2e}, max weight diff {weight_diff:.2e}, "
          f"max reference log-prob diff {max_diff(a, b):.2e}")
    assert sorted(one) == sorted(two) == list(range(STEPS))
    assert loss_diff < 1e-5 and weight_diff < 5e-5
    assert a.keys() == b.keys() == {"train", "val"}
    assert (a["train"] != 0).all()  # every pair filled, by one rank or the other
    assert max_diff(a, b) < 1e-4  # summed log-probs of ~50 tokens, batched differently
    shutil.rmtree(cache)


# -- strategy construction and bad input (no processes) -------------------------------------------

def solar_10_7b_on_meta():
    """SOLAR 10.7B's shape (Mistral 7B's blocks, 48 layers) with no memory behind it."""
    from transformers import MistralConfig, MistralForCausalLM
    config = MistralConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=48,
                           num_attention_heads=32, num_key_value_heads=8, vocab_size=32000)
    with torch.device("meta"):
        return MistralForCausalLM(config)


def test_fsdp_wraps_and_checkpoints_each_decoder_layer_of_the_10_7b_model():
    from lightning.pytorch.strategies import FSDPStrategy
    from transformers.models.mistral.modeling_mistral import MistralDecoderLayer

    from solar.distributed import make_strategy
    model = solar_10_7b_on_meta()
    n = sum(p.numel() for p in model.parameters())
    assert 10.6e9 < n < 10.8e9  # the README's memory arithmetic starts from this
    strategy = make_strategy("fsdp", model, activation_checkpointing=True)
    assert isinstance(strategy, FSDPStrategy) and strategy._state_dict_type == "sharded"
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {MistralDecoderLayer}
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == \
        {MistralDecoderLayer}
    assert not make_strategy("fsdp", model, False)._activation_checkpointing_kwargs


def test_fsdp_without_a_decoder_layer_names_the_key():
    from solar.config import ConfigError
    from solar.distributed import make_strategy
    with pytest.raises(ConfigError, match="`trainer.strategy`: fsdp needs a decoder layer"):
        make_strategy("fsdp", torch.nn.Linear(2, 2), activation_checkpointing=False)


@pytest.mark.parametrize("override, key", [
    ("trainer.devices=64", "`trainer.devices` asks for 64 but this machine has"),
    ("trainer.strategy=fsdp", "`trainer.strategy`: fsdp needs CUDA GPUs"),
    ("objective.attn_implementation=flash_attention_2",
     "`objective.attn_implementation`: flash_attention_2 needs CUDA"),
])
def test_scale_out_config_errors_name_the_key(override, key):
    from hydra import compose, initialize_config_dir

    from solar.config import ConfigError, validate_train
    from solar.runs import CONF_DIR
    if torch.cuda.is_available() and "devices" not in override:
        pytest.skip("CUDA present: fsdp and flash-attn are valid here")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+ablation=sft_v3", "scale=tiny", override])
    with pytest.raises(ConfigError) as err:
        validate_train(cfg)
    assert len(err.value.errors) == 1 and err.value.errors[0].startswith(key)


def test_too_many_devices_exits_2_with_one_error_naming_the_key(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "solar.train", "+ablation=sft_v3", "scale=tiny",
                           f"paths.runs={tmp_path}", "trainer.devices=64"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("error:") == 1 and "`trainer.devices` asks for 64" in proc.stderr
    assert not (tmp_path / "tiny").exists()
