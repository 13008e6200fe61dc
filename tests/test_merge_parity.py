"""Every merge method against mergekit's own merge of the same two tiny models.

Each case is one mergekit config and the solar command line that translates it key for key
(README "Model merging"); keys a config leaves out take each tool's defaults, so the defaults are
compared too. DARE at density 1 (drop_rate 0): the only setting where both are deterministic.
"""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from solar.merge import run
from solar.runs import CONF_DIR
from solar.weights import Checkpoint
from solar.weights.synthetic import write_random_llama

mergekit_merge = pytest.importorskip("mergekit.merge", reason="mergekit is a `bench` extra")
from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions

# name: (mergekit method, its parameters, per-model weights, solar overrides, max abs diff)
CASES = {
    "linear": ("linear", {}, [0.3, 0.5], ["+merge=average"], 0.0),
    "linear_unnormalized": ("linear", {"normalize": False}, [0.3, 0.5],
                            ["+merge=average", "merge.normalize=false"], 0.0),
    # SLERP's norms and dot product are reductions that mergekit sums in chunks: float32 rounding
    "slerp": ("slerp", {"t": 0.3}, None, ["+merge=slerp", "merge.t=0.3"], 1e-6),
    "slerp_gradient": ("slerp", {"t": [0.0, 0.5, 1.0]}, None,
                       ["+merge=slerp", "merge.t=[0.0,0.5,1.0]"], 1e-6),
    "ties": ("ties", {"density": 0.5}, [0.7, 0.4], ["+merge=ties", "merge.density=0.5"], 0.0),
    "ties_defaults": ("ties", {}, [1.0, 1.0], ["+merge=ties"], 0.0),
    "dare_linear": ("dare_linear", {}, [1.0, 1.0], ["+merge=dare"], 0.0),
    "dare_linear_density1": ("dare_linear", {"density": 1.0}, [0.6, 0.8],
                             ["+merge=dare", "merge.drop_rate=0.0"], 0.0),
    "dare_ties": ("dare_ties", {}, [0.6, 0.8], ["+merge=dare", "merge.consensus=true"], 0.0),
    "dare_ties_normalized": ("dare_ties", {"normalize": True}, [0.6, 0.8],
                             ["+merge=dare", "merge.consensus=true", "merge.normalize=true"], 0.0),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    return {k: write_random_llama(root / k, seed=s) for k, s in (("base", 0), ("a", 1), ("b", 2))}


def tensors(path) -> dict[str, torch.Tensor]:
    ck = Checkpoint(path)
    return {n: ck.view(n).clone() for n in ck.names}


def mergekit_output(method, params, weights, models, out):
    a, b, base = (str(models[k]) for k in ("a", "b", "base"))
    if method == "slerp":  # mergekit's slerp: base_model is t=0, as solar's first model
        entries, base = [{"model": a}, {"model": b}], a
    else:
        entries = [{"model": m, "parameters": {"weight": w}} for m, w in zip((a, b), weights)]
    cfg = {"merge_method": method, "models": entries, "parameters": params, "dtype": "float32"}
    if method != "linear":
        cfg["base_model"] = base
    mergekit_merge.run_merge(MergeConfiguration.model_validate(cfg), str(out),
                             MergeOptions(copy_tokenizer=False, quiet=True,
                                          write_model_card=False))
    return tensors(out)


def solar_output(overrides, weights, models, runs):
    a, b, base = (str(models[k]) for k in ("a", "b", "base"))
    extra = [f"merge.weights=[{weights[0]},{weights[1]}]"] if weights else []
    if not overrides[0].endswith(("average", "slerp")):
        extra.append(f"merge.base={base}")
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("merge", overrides=[*overrides, *extra, f"merge.models=[{a},{b}]",
                                          f"paths.runs={runs}", "run.name=out",
                                          "output.progress=false"])
    return tensors(run(cfg) / "model")


@pytest.mark.parametrize("case", list(CASES))
def test_merge_equals_mergekit(case, models, tmp_path):
    method, params, weights, overrides, tol = CASES[case]
    ref = mergekit_output(method, params, weights, models, tmp_path / "mergekit")
    got = solar_output(overrides, weights, models, tmp_path / "runs")
    assert set(got) == set(ref)
    diff = max((got[n].double() - ref[n].double()).abs().max().item() for n in ref)
    print(f"{case}: max abs diff vs mergekit {diff:.3g}")
    assert diff <= tol, (case, diff)
    if case.startswith("dare"):  # the task vectors were really added (not a copy of the base)
        base = tensors(models["base"])
        assert any(not torch.equal(got[n], base[n]) for n in base)
