"""Several processes on CPU (gloo): real ranks, real `python -m solar.train`, DDP and FSDP.

2 ranks x b rows per micro-batch must train exactly like 1 rank x 2b rows (same global batch and
data order): the same loss at every step and the same final weights, within fp32 round-off
(the reductions run in a different order). Tolerances: loss 1e-5 per step; weights 5e-5, 0.2% of
the most AdamW can move a weight in 8 steps at lr 3e-3 (Adam's m/sqrt(v) magnifies round-off in
weights whose gradient is ~0; measured: SFT loss 9.5e-7, weights 6.2e-7; DPO below). A killed DDP
run resumes to the same losses; the model is exported once, by rank 0; metrics are written once;
DPO's reference precompute is split over the ranks and caches what one rank computes. FSDP
(FSDP2, the code path GPUs run) is tested the same way on CPU: the same losses and weights as one
rank, sharded checkpoints whose gathered weights are the export, resume from the shards, DPO's
reference precompute on the sharded policy, activation checkpointing per layer.
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
          kill_at: int | None = None, strategy: str = "ddp") -> subprocess.CompletedProcess:
    """One `python -m solar.train` over `ranks` processes (`strategy`: ddp or fsdp), b rows
    (pairs) per micro-batch each."""
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
           f"trainer.strategy={strategy if ranks > 1 else 'auto'}"]
    # own process group: the kill hook takes down every rank and nothing else
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
                          start_new_session=True, check=False)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def records(record: Path, rank: int = 0) -> list[dict]:
    return [json.loads(x) for x in (record / f"losses.rank{rank}.jsonl").read_text().splitlines()]


def losses(record: Path, rank: int = 0) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records(record, rank)}


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


# -- FSDP (FSDP2 over gloo: the same code path as on GPUs) ----------------------------------------

@pytest.fixture(scope="module")
def fsdp(sft):
    """SFT v3 under FSDP: 2 ranks x 2 rows, the same with activation checkpointing, and a run
    killed at step 6 then resumed from its sharded step-4 checkpoint."""
    root, _, _ = sft
    two = ok(train(root / "fsdp", root / "rec-fsdp", SFT, ranks=2, b=2, strategy="fsdp"))
    ok(train(root / "fsdp-ac", root / "rec-fsdp-ac", [*SFT, "objective.activation_checkpointing=true"],
             ranks=2, b=2, strategy="fsdp"))
    killed = train(root / "fsdp-killed", root / "rec-fsdp-killed", SFT, ranks=2, b=2, kill_at=6,
                   strategy="fsdp")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (root / "fsdp-killed" / "tiny" / "sft_v3" / "model").exists()
    (root / "rec-fsdp-killed" / "losses.rank0.jsonl").unlink()
    ok(train(root / "fsdp-killed", root / "rec-fsdp-killed", SFT, ranks=2, b=2, strategy="fsdp"))
    return root, two


def test_fsdp_trains_like_one_rank_with_twice_the_rows(fsdp):
    root, _ = fsdp
    one, two = losses(root / "rec-one"), losses(root / "rec-fsdp")
    assert sorted(two) == list(range(STEPS)) and losses(root / "rec-fsdp", rank=1) == two
    loss_diff = max(abs(one[s] - two[s]) for s in one)
    weight_diff = max_diff(weights(root / "one" / "tiny" / "sft_v3" / "model"),
                           weights(root / "fsdp" / "tiny" / "sft_v3" / "model"))
    ac = losses(root / "rec-fsdp-ac")
    ac_diff = max(abs(ac[s] - two[s]) for s in two)
    ac_weight_diff = max_diff(weights(root / "fsdp-ac" / "tiny" / "sft_v3" / "model"),
                              weights(root / "fsdp" / "tiny" / "sft_v3" / "model"))
    print(f"FSDP SFT: max loss diff per step {loss_diff:.2e}, max weight diff {weight_diff:.2e} "
          f"(vs 1 rank x 2b); with activation checkpointing: max loss diff {ac_diff:.2e}, "
          f"max weight diff {ac_weight_diff:.2e}")
    assert loss_diff < 1e-5 and weight_diff < 5e-5  # the DDP tolerances (module docstring)
    assert ac_diff < 1e-6 and ac_weight_diff < 1e-6  # recomputing each layer changes nothing
    # what ran: the seeded tiny model's 4 decoder layers + the root as FSDP units, each layer
    # checkpointed only when asked (the 5th flag is LlamaModel's own)
    assert {(r["sharded_units"], r["checkpointed"]) for r in records(root / "rec-fsdp")} == {(5, 0)}
    assert {(r["sharded_units"], r["checkpointed"]) for r in records(root / "rec-fsdp-ac")} == \
        {(5, 5)}
    assert {r["sharded_units"] for r in records(root / "rec-one")} == {0}


def test_fsdp_checkpoints_are_sharded_and_the_export_is_their_gathered_weights(fsdp):
    """Each rank writes its own shard of every checkpoint; the HF export (rank 0 only) equals
    the full weights read back from the last sharded checkpoint, exactly, and reloads."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    root, two = fsdp
    run = root / "fsdp" / "tiny" / "sft_v3"
    assert two.stdout.count("model: ") == 1
    assert [p.name for p in run.parent.iterdir()] == ["sft_v3"]
    last = run / "checkpoints" / "last.ckpt"
    shards = sorted(p.name for p in last.glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]
    exported = weights(run / "model")
    n_bytes = sum(v.numel() * v.element_size() for v in exported.values())
    for shard_file in shards:  # each holds half of the weights (+ AdamW's m and v: x3 in all)
        assert 1.2 * n_bytes < (last / shard_file).stat().st_size < 1.8 * n_bytes
    dcp_to_torch_save(last, root / "fsdp-last.pt")
    gathered = torch.load(root / "fsdp-last.pt", weights_only=False)["state_dict"]
    assert max_diff(exported, {k.removeprefix("model."): v for k, v in gathered.items()
                               if k.startswith("model.")}) == 0
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert torch.isfinite(model(torch.tensor([[1, 5, 9, 14]])).logits).all()


def test_killed_fsdp_run_resumes_from_its_shards_to_the_same_losses(fsdp):
    root, _ = fsdp
    resumed, reference = losses(root / "rec-fsdp-killed"), losses(root / "rec-fsdp")
    assert sorted(resumed) == list(range(EVERY, STEPS))
    assert max(abs(resumed[s] - reference[s]) for s in resumed) < 1e-6
    assert max_diff(weights(root / "fsdp-killed" / "tiny" / "sft_v3" / "model"),
                    weights(root / "fsdp" / "tiny" / "sft_v3" / "model")) < 1e-6


def test_dpo_under_fsdp_trains_like_one_rank_and_caches_the_same_reference(fsdp):
    """DPO from the SFT model under FSDP: the reference precompute runs on the sharded policy
    (half the pairs per rank, the same number of forwards on each) and the run matches 1 rank."""
    root, _ = fsdp
    dpo = [*DPO, f"model.pretrained={root / 'one' / 'tiny' / 'sft_v3' / 'model'}"]
    cache = Path(os.environ["SOLAR_CACHE"]) / "ref_logps"
    before = set(cache.glob("*.safetensors"))
    ok(train(root / "fsdp-dpo", root / "rec-fsdp-dpo", dpo, ranks=2, b=2, strategy="fsdp"))
    (two_cache,) = set(cache.glob("*.safetensors")) - before
    a = load_file(two_cache)
    two_cache.unlink()  # 1 rank must compute its own
    ok(train(root / "fsdp-dpo-one", root / "rec-fsdp-dpo-one", dpo, ranks=1, b=4))
    (one_cache,) = set(cache.glob("*.safetensors")) - before
    b = load_file(one_cache)
    one, two = losses(root / "rec-fsdp-dpo-one"), losses(root / "rec-fsdp-dpo")
    loss_diff = max(abs(one[s] - two[s]) for s in one)
    weight_diff = max_diff(weights(root / "fsdp-dpo-one" / "tiny" / "dpo_v2" / "model"),
                           weights(root / "fsdp-dpo" / "tiny" / "dpo_v2" / "model"))
    print(f"FSDP DPO: max loss diff per step {loss_diff:.2e}, max weight diff {weight_diff:.2e}, "
          f"max reference log-prob diff {max_diff(a, b):.2e}")
    assert sorted(one) == sorted(two) == list(range(STEPS))
    assert loss_diff < 1e-5 and weight_diff < 5e-5
    assert a.keys() == b.keys() == {"train", "val"} and (a["train"] != 0).all()
    assert max_diff(a, b) < 1e-4
    one_cache.unlink()


def test_fsdp_bf16_mixed_computes_in_bf16_and_keeps_fp32_master_weights(fsdp):
    """trainer.precision=bf16-mixed (the paper-scale default): the layers are gathered and run in
    bf16, so the losses leave the fp32 run's by bf16 round-off (not 0, not a different run), and
    the sharded master weights, hence the export, stay fp32."""
    root, _ = fsdp
    ok(train(root / "fsdp-bf16", root / "rec-fsdp-bf16", [*SFT, "trainer.precision=bf16-mixed"],
             ranks=2, b=2, strategy="fsdp"))
    bf16, fp32 = losses(root / "rec-fsdp-bf16"), losses(root / "rec-fsdp")
    diff = max(abs(bf16[s] - fp32[s]) for s in fp32)
    print(f"FSDP bf16-mixed vs fp32: max loss diff per step {diff:.2e}")
    assert 1e-4 < diff < 0.1
    exported = weights(root / "fsdp-bf16" / "tiny" / "sft_v3" / "model")
    assert {v.dtype for v in exported.values()} == {torch.float32}


def test_sdpo_under_fsdp_matches_one_rank(fsdp):
    """sDPO's two steps in one process group: rank 1 waits for rank 0's export of step 1 (it is
    step 2's policy and reference), and a val split of one batch (one rank runs it, the other a
    repeat) still logs once. Both stages' losses and the final weights match one rank."""
    root, _ = fsdp
    sdpo = ["+ablation=sdpo", f"model.pretrained={root / 'one' / 'tiny' / 'sft_v3' / 'model'}",
            "data.max_length=96", "objective.warmup_steps=2",
            "data.sources.orca_dpo_pairs.max_samples=60",
            "data.sources.ultrafeedback_clean.max_samples=60",
            "data.sources.synth_math_alignment.max_samples=40"]
    ok(train(root / "sdpo-two", root / "rec-sdpo-two", sdpo, ranks=2, b=2, strategy="fsdp"))
    ok(train(root / "sdpo-one", root / "rec-sdpo-one", sdpo, ranks=1, b=4))
    one = [r["loss"] for r in records(root / "rec-sdpo-one")]
    two = [r["loss"] for r in records(root / "rec-sdpo-two")]
    assert len(one) == len(two) == 2 * STEPS  # both sDPO steps ran, 8 optimizer steps each
    loss_diff = max(abs(a - b) for a, b in zip(one, two))
    weight_diff = max_diff(weights(root / "sdpo-one" / "tiny" / "sdpo" / "model"),
                           weights(root / "sdpo-two" / "tiny" / "sdpo" / "model"))
    print(f"FSDP sDPO: max loss diff per step {loss_diff:.2e}, max weight diff {weight_diff:.2e}")
    assert loss_diff < 1e-5 and weight_diff < 5e-5
    for run in ("sdpo-one", "sdpo-two"):
        with open(root / run / "tiny" / "sdpo" / "steps" / "1-orca" / "metrics" / "metrics.csv") as f:
            assert sum(1 for r in csv.DictReader(f) if r.get("val/loss")) == STEPS // EVERY


# -- strategy construction and bad input (no processes) -------------------------------------------

def solar_10_7b_on_meta():
    """SOLAR 10.7B's shape (Mistral 7B's blocks, 48 layers) with no memory behind it."""
    from transformers import MistralConfig, MistralForCausalLM
    config = MistralConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=48,
                           num_attention_heads=32, num_key_value_heads=8, vocab_size=32000)
    with torch.device("meta"):
        return MistralForCausalLM(config)


def test_fsdp_shards_each_decoder_layer_of_the_10_7b_model():
    """The paper-scale model on the meta device, sharded over a one-process gloo group: every one
    of the 48 MistralDecoderLayers is its own FSDP unit, the root holds the rest, and under bf16
    the gathered parameters are bf16 while the gradients are reduced in fp32."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule
    from transformers.models.mistral.modeling_mistral import MistralDecoderLayer

    from solar.distributed import FSDP2Strategy, make_strategy, shard
    model = solar_10_7b_on_meta()
    n = sum(p.numel() for p in model.parameters())
    assert 10.6e9 < n < 10.8e9  # the README's memory arithmetic starts from this
    assert isinstance(make_strategy("fsdp", model), FSDP2Strategy)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        shard(model, init_device_mesh("cpu", (1,)), "bf16-mixed")
        layers = [m for m in model.modules() if isinstance(m, MistralDecoderLayer)]
        assert len(layers) == 48 and all(isinstance(m, FSDPModule) for m in layers)
        assert isinstance(model, FSDPModule)
        policy = model._get_fsdp_state()._mp_policy
        assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    finally:
        dist.destroy_process_group()


def test_fsdp_without_a_decoder_layer_names_the_key():
    from solar.config import ConfigError
    from solar.distributed import make_strategy
    with pytest.raises(ConfigError, match="`trainer.strategy`: fsdp needs a decoder layer"):
        make_strategy("fsdp", torch.nn.Linear(2, 2))


@pytest.mark.parametrize("overrides, key", [
    (["+ablation=sft_v3", "trainer.devices=64"],
     "`trainer.devices` asks for 64 but this machine has"),
    (["+ablation=dpo_v2", "trainer.strategy=fsdp", "objective.reference=live"],
     "`objective.reference`: live keeps an unsharded copy"),
    (["+ablation=sft_v3", "objective.attn_implementation=flash_attention_2"],
     "`objective.attn_implementation`: flash_attention_2 needs CUDA"),
])
def test_scale_out_config_errors_name_the_key(overrides, key):
    from hydra import compose, initialize_config_dir

    from solar.config import ConfigError, validate_train
    from solar.runs import CONF_DIR
    if torch.cuda.is_available() and "flash" in key:
        pytest.skip("CUDA present: flash-attn is valid here")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, "scale=tiny"])
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
