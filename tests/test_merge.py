"""Merges: Average, SLERP, TIES, DARE against hand computations / closed forms; bad input."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from solar.merge import run
from solar.runs import CONF_DIR, MissingParentError, RunDirError
from solar.weights import Checkpoint, CheckpointError, merge_checkpoints
from solar.weights import merge_methods as mm
from solar.weights.merge import resolve_setting
from solar.weights.synthetic import write_random_llama

ABLATIONS = {"sft_v3_v4": ("average", ["sft_v3", "sft_v4"], [0.5, 0.5]),
             "dpo_v1_v2": ("average", ["dpo_v1", "dpo_v2"], [0.5, 0.5]),
             "merge_v1": ("average", ["cand_1", "cand_2"], [0.5, 0.5]),
             "merge_v2": ("average", ["cand_1", "cand_2"], [0.4, 0.6]),
             "merge_v3": ("average", ["cand_1", "cand_2"], [0.6, 0.4]),
             "merge_v4": ("slerp", ["cand_1", "cand_2"], None)}


def tensors(path) -> dict[str, torch.Tensor]:
    ck = Checkpoint(path)
    return {n: ck.view(n).clone() for n in ck.names}


def merged(tmp_path, dirs, name="out", **kw):
    out = tmp_path / name
    out.mkdir()
    merge_checkpoints(dirs, out, progress=False, **kw)
    return tensors(out)


@pytest.fixture
def pair(tmp_path):
    return [write_random_llama(tmp_path / f"m{i}", seed=i, max_shard_bytes=60_000)
            for i in (1, 2)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_average_of_identical_models_is_the_model(tmp_path, dtype):
    # float32: 0.5x + 0.5x is exact; bfloat16: float32 sums of 0.2/0.3/0.5 round back to x
    a = write_random_llama(tmp_path / "a", dtype=dtype)
    weights = [0.2, 0.3, 0.5] if dtype == "bfloat16" else [1.0, 1.0]
    out = merged(tmp_path, [a] * len(weights), method="average", weights=weights)
    for name, x in tensors(a).items():
        assert out[name].dtype == x.dtype and torch.equal(out[name], x), name


def test_average_weights_match_hand_computation(tmp_path, pair):
    out = merged(tmp_path, pair, method="average", weights=[2.0, 3.0])  # normalised: 0.4 / 0.6
    a, b = tensors(pair[0]), tensors(pair[1])
    for name in a:
        x, y = a[name].double().numpy(), b[name].double().numpy()
        hand = 0.4 * x + 0.6 * y
        bound = 3 * np.finfo(np.float32).eps * (0.4 * abs(x) + 0.6 * abs(y))  # float32 rounding
        assert (abs(out[name].numpy() - hand) <= bound).all(), name
    x = torch.tensor([1.0, -2.0, 4.0])
    assert mm.average([x, 3 * x], [0.4, 0.6]).tolist() == pytest.approx([2.2, -4.4, 8.8])
    assert mm.average([x, x], [1.0, 1.0], normalize=False).tolist() == [2.0, -4.0, 8.0]


def slerp_reference(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Closed form: normalise, θ = arccos(cos), sin((1−t)θ)/sin θ · a + sin(tθ)/sin θ · b."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = float(np.dot(a64.ravel() / np.linalg.norm(a64), b64.ravel() / np.linalg.norm(b64)))
    theta = math.acos(cos)
    return (math.sin((1 - t) * theta) * a64 + math.sin(t * theta) * b64) / math.sin(theta)


def test_slerp_endpoints_colinear_and_closed_form(tmp_path, pair):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 40, generator=gen), torch.randn(50, 40, generator=gen)
    assert torch.equal(mm.slerp(a, b, 0.0), a) and torch.equal(mm.slerp(a, b, 1.0), b)
    for t in (0.25, 0.5, 0.8):
        np.testing.assert_allclose(mm.slerp(a, b, t).numpy(), slerp_reference(a.numpy(),
                                   b.numpy(), t), rtol=1e-5, atol=1e-6)
    # |cos| = 1 (b = 2.5a or −a): the linear branch, on the original tensors
    torch.testing.assert_close(mm.slerp(a, 2.5 * a, 0.3), 0.7 * a + 0.3 * 2.5 * a)
    torch.testing.assert_close(mm.slerp(a, -a, 0.3), 0.7 * a - 0.3 * a)
    near = a + 1e-3 * b  # cos ≈ 0.9999995 > 0.9995: still linear
    torch.testing.assert_close(mm.slerp(a, near, 0.5), 0.5 * a + 0.5 * near)
    out = merged(tmp_path, pair, method="slerp", params={"t": 0.0})
    for name, x in tensors(pair[0]).items():
        assert torch.equal(out[name], x), name


def test_slerp_layer_schedule_and_filters(tmp_path, pair):
    # mergekit semantics: gradient over position = layer / (n − 1); non-layer tensors at 0;
    # first matching filter wins; no filter matches everything.
    t = [{"filter": "self_attn", "value": [0.0, 1.0]}, {"filter": "mlp", "value": 0.9},
         {"value": [0.2, 0.4, 0.8]}]
    assert resolve_setting(t, "model.layers.1.self_attn.q_proj.weight", 1 / 3) == \
        pytest.approx(1 / 3)
    assert resolve_setting(t, "model.layers.1.mlp.up_proj.weight", 1 / 3) == 0.9
    assert resolve_setting(t, "model.norm.weight", 0.0) == pytest.approx(0.2)
    assert resolve_setting(t, "model.layers.2.input_layernorm.weight", 2 / 3) == \
        pytest.approx(0.4 + (1 / 3) * 0.4)
    out = merged(tmp_path, pair, method="slerp", params={"t": t})
    a, b = tensors(pair[0]), tensors(pair[1])
    name = "model.layers.3.self_attn.o_proj.weight"  # position 1 → t = 1: the second model
    assert torch.equal(out[name], b[name])
    name = "model.layers.1.mlp.down_proj.weight"
    np.testing.assert_allclose(out[name].numpy(), slerp_reference(a[name].numpy(),
                               b[name].numpy(), 0.9), rtol=1e-5, atol=1e-7)


def test_ties_matches_hand_computation():
    base = torch.tensor([1.0, 1.0, 1.0, 1.0])
    x1 = base + torch.tensor([1.0, -2.0, 3.0, 0.5])   # trimmed to [0, -2, 3, 0]
    x2 = base + torch.tensor([-1.0, 1.0, 2.0, -4.0])  # trimmed to [0, 0, 2, -4]
    # elected signs of [0, -2, 5, -4]: +, −, +, −; disjoint means: 0 (none), −2, 2.5, −4
    out = mm.ties(base, [x1, x2], [1.0, 1.0], density=0.5)
    assert out.tolist() == [1.0, -1.0, 3.5, -3.0]
    # weights scale the election and the mean: w = (3, 1) on untrimmed deltas
    out = mm.ties(base, [x1, x2], [3.0, 1.0], density=1.0)
    # weighted sums [2, -5, 11, -2.5]: all +,−,+,−; agree: [x1], [x1], [both], [x2]
    assert out.tolist() == pytest.approx([2.0, -1.0, 1 + (9 + 2) / 4, -3.0])


def test_dare_drops_and_rescales():
    base = torch.zeros(20_000)
    x = torch.full((20_000,), 0.3)
    gen = torch.Generator().manual_seed(0)
    out = mm.dare(base, [x], [1.0], drop_rate=0.75, generator=gen)
    kept = out != 0
    assert torch.allclose(out[kept], torch.tensor(0.3 / 0.25))  # survivors × 1/(1 − p)
    assert 0.23 < kept.float().mean().item() < 0.27
    y = torch.full((20_000,), -0.1)  # p = 0: the weighted mean of task vectors
    out = mm.dare(base + 1, [x + 1, y + 1], [0.25, 0.75], 0.0, torch.Generator())
    torch.testing.assert_close(out, torch.full((20_000,), 1 + 0.25 * 0.3 - 0.75 * 0.1))


def test_ties_and_dare_outputs_reload(tmp_path, pair):
    from transformers import LlamaForCausalLM

    base = write_random_llama(tmp_path / "base", seed=0)
    for method, params in (("ties", {"density": 0.3}), ("dare", {"drop_rate": 0.5, "seed": 1})):
        out = tmp_path / method
        out.mkdir()
        merge_checkpoints(pair, out, method=method, params=params, base_dir=base, progress=False)
        model = LlamaForCausalLM.from_pretrained(out)
        logits = model(torch.tensor([[1, 2, 3]])).logits
        assert torch.isfinite(logits).all()
        got = model.model.layers[0].mlp.up_proj.weight
        b = Checkpoint(base).view("model.layers.0.mlp.up_proj.weight")
        changed = (got != b).float().mean().item()
        assert 0.2 < changed < 0.9, (method, changed)  # sparse task vectors were added


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose("merge", overrides=[f"paths.runs={tmp_path / 'runs'}",
                                            "output.progress=false", *overrides])


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablations_compose(tmp_path, name):
    cfg = _cfg(tmp_path, f"+ablation={name}", "scale=tiny")
    method, models, weights = ABLATIONS[name]
    assert cfg.entry == "merge" and cfg.run.name == name and cfg.merge.method == method
    assert list(cfg.merge.models) == models
    assert (list(cfg.merge.weights) == weights) if weights else cfg.merge.t == 0.5


def test_merge_run_by_name_and_refusals(tmp_path, pair):
    import shutil

    for i, p in enumerate(pair, 1):
        shutil.copytree(p, tmp_path / "runs" / "paper" / f"cand_{i}" / "model")
    out = run(_cfg(tmp_path, "+ablation=merge_v2"))
    lineage = (out / "lineage.json").read_text()
    assert '"cand_1"' in lineage and "0.4" in lineage
    assert run(_cfg(tmp_path, "+ablation=merge_v2")) == out  # finished already: untouched
    with pytest.raises(RunDirError, match=r"merge.weights: \[0.4, 0.6\] -> \[0.5, 0.5\]"):
        run(_cfg(tmp_path, "+ablation=merge_v2", "merge.weights=[0.5,0.5]"))
    with pytest.raises(MissingParentError, match=r"python -m solar.train \+ablation=sft_v3"):
        run(_cfg(tmp_path, "+ablation=sft_v3_v4"))


def _bad(tmp_path, a, b, method="average", **kw):
    with pytest.raises((CheckpointError, ValueError)) as err:
        merge_checkpoints([a, b], tmp_path / "never", method=method, progress=False, **kw)
    assert not (tmp_path / "never").exists()
    return str(err.value)


def test_bad_inputs_name_the_cause(tmp_path, pair):
    deeper = write_random_llama(tmp_path / "deep", layers=5)
    assert "model.layers.4.input_layernorm.weight" in _bad(tmp_path, pair[0], deeper)
    wide = write_random_llama(tmp_path / "wide", intermediate=128)
    assert "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [96, 64]" in \
        _bad(tmp_path, pair[0], wide)
    other = tmp_path / "qwen"
    shutil_copy = __import__("shutil").copytree
    shutil_copy(pair[1], other)
    cfg = (other / "config.json").read_text().replace('"llama"', '"qwen2"')
    (other / "config.json").write_text(cfg)
    assert "architectures differ" in _bad(tmp_path, pair[0], other)
    assert "do not sum to a positive number" in _bad(tmp_path, *pair, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="slerp merges exactly two models, got 3"):
        merge_checkpoints([*pair, pair[0]], tmp_path / "x", method="slerp", params={"t": 0.5})


def test_cli_bad_input_leaves_nothing(tmp_path, pair):
    runs = tmp_path / "runs"
    shard = min(pair[1].glob("model-*.safetensors"))
    shard.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    proc = subprocess.run([sys.executable, "-m", "solar.merge", "+merge=average",
                           f"merge.models=[{pair[0]},{pair[1]}]", f"paths.runs={runs}",
                           "run.name=bad"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: corrupt safetensors file {shard}")
    assert not any(p.is_file() or p.name != "paper" for p in runs.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "solar.merge", "+merge=slerp",
                           f"merge.models=[{pair[0]},{pair[0]},{pair[0]}]"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "slerp merges exactly two models" in proc.stderr


def test_mixed_dtype_inputs_and_torch_threads_restored(tmp_path):
    # bf16 + fp32 inputs: each is upcast into a reused float32 buffer, the result cast back to
    # the first model's dtype, exactly as 0.5·float(x) + 0.5·float(y) rounded once.
    a = write_random_llama(tmp_path / "a", dtype="bfloat16", seed=1)
    b = write_random_llama(tmp_path / "b", dtype="float32", seed=2)
    threads = torch.get_num_threads()
    out = merged(tmp_path, [a, b], method="average")
    assert torch.get_num_threads() == threads  # the writer lends torch's spare core back
    x, y = tensors(a), tensors(b)
    for name in x:
        want = torch.mul(x[name].float(), 0.5).add_(y[name], alpha=0.5).bfloat16()
        assert out[name].dtype == torch.bfloat16 and torch.equal(out[name], want), name


def test_mapped_views_are_released(pair):
    ck = Checkpoint(pair[0])
    name = "model.layers.0.mlp.up_proj.weight"
    with ck.mapped(name) as view:
        copy = view.clone()
    # After the block the pages are unmapped; touching the view maps them again from the file
    # (copy-on-write, read-only use), so a stray late reader still sees the right bytes.
    assert torch.equal(view, copy) and torch.equal(ck.view(name), copy)
    del view
    ck.close()


def test_errors_in_compute_or_write_surface_without_hanging(tmp_path, pair):
    from solar.weights.writer import OutputTensor, write_checkpoint

    def boom(out):
        raise RuntimeError("arithmetic failed")

    ok = [OutputTensor(f"t{i}", "F32", (1000,), compute=lambda out: out.fill_(1.0))
          for i in range(5)]
    (tmp_path / "c").mkdir()
    with pytest.raises(RuntimeError, match="arithmetic failed"):
        write_checkpoint(tmp_path / "c", [*ok, OutputTensor("bad", "F32", (10,), compute=boom)],
                         progress=False)
    src = Checkpoint(pair[0])
    info = src.tensors["model.layers.0.mlp.up_proj.weight"]
    info.file.write_bytes(info.file.read_bytes()[: info.start])  # truncated after planning
    (tmp_path / "w").mkdir()
    with pytest.raises(OSError, match="unexpected end of"):
        write_checkpoint(tmp_path / "w", [*ok, OutputTensor("copied", info.dtype, info.shape,
                                                            source=info)], progress=False)
