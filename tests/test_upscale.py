"""Depth up-scaling: exact byte mapping, config, tokenizer carry, tied embeddings, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from solar.runs import CONF_DIR, MissingParentError, RunDirError
from solar.upscale import run
from solar.weights import Checkpoint, CheckpointError, upscale_checkpoint
from solar.weights.synthetic import write_random_llama


def raw(ckpt: Checkpoint, name: str) -> bytes:
    info = ckpt.tensors[name]
    with open(info.file, "rb") as f:
        f.seek(info.start)
        return f.read(info.nbytes)


@pytest.fixture
def src(tmp_path) -> Path:
    path = write_random_llama(tmp_path / "src", layers=4, max_shard_bytes=100_000)
    (path / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    (path / "chat_template.jinja").write_text("{{ messages }}")
    return path


@pytest.mark.parametrize("m,expected", [(1, [0, 1, 2, 1, 2, 3]), (2, [0, 1, 2, 3]),
                                        (0, [0, 1, 2, 3, 0, 1, 2, 3])])
def test_every_tensor_is_the_right_source_bytes(src, tmp_path, m, expected):
    out = tmp_path / "out"
    out.mkdir()
    info = upscale_checkpoint(src, out, m=m, max_shard_bytes=150_000, progress=False)
    assert info["source_layers"] == expected and info["s"] == len(expected)
    a, b = Checkpoint(src), Checkpoint(out)
    assert (out / "model.safetensors.index.json").is_file()  # small shards force an index
    per_layer = [n.split("model.layers.0.")[1] for n in a.names if n.startswith("model.layers.0.")]
    want = {n: n for n in a.names if ".layers." not in n}
    for j, i in enumerate(expected):
        want.update({f"model.layers.{j}.{r}": f"model.layers.{i}.{r}" for r in per_layer})
    assert sorted(b.names) == sorted(want)
    for out_name, src_name in want.items():
        assert raw(b, out_name) == raw(a, src_name), out_name
        assert b.tensors[out_name].shape == a.tensors[src_name].shape
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == len(expected)
    assert (out / "chat_template.jinja").read_text() == "{{ messages }}"
    assert (out / "tokenizer_config.json").is_file()


def test_target_depth_equals_m(src, tmp_path):
    (tmp_path / "a").mkdir()
    assert upscale_checkpoint(src, tmp_path / "a", layers=6, progress=False)["m"] == 1


def test_tied_embeddings_load_and_run(tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    src = write_random_llama(tmp_path / "src", layers=4, tie=True)
    out = tmp_path / "out"
    out.mkdir()
    upscale_checkpoint(src, out, m=1, progress=False)
    assert "lm_head.weight" not in Checkpoint(out).names
    model = LlamaForCausalLM.from_pretrained(out)
    assert len(model.model.layers) == 6
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    torch.testing.assert_close(model.model.layers[4].mlp.up_proj.weight,
                               Checkpoint(src).view("model.layers.2.mlp.up_proj.weight"))
    logits = model(torch.tensor([[1, 5, 7]])).logits
    assert logits.shape == (1, 3, 128) and torch.isfinite(logits).all()


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose("upscale", overrides=[f"paths.runs={tmp_path / 'runs'}",
                                              "upscale.progress=false", *overrides])


def test_tiny_scale_recipe_loads_in_transformers(tmp_path, cache_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = _cfg(tmp_path, "scale=tiny", f"paths.cache={cache_dir}")
    assert cfg.upscale.m == 1 and cfg.run.name == "dus"
    model_dir = run(cfg) / "model"
    lineage = json.loads((model_dir.parent / "lineage.json").read_text())
    assert lineage["method"] == "dus" and lineage["params"]["source_layers"] == [0, 1, 2, 1, 2, 3]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.num_hidden_layers == 6 and tok.chat_template
    ids = tok("2 + 3 =", return_tensors="pt").input_ids
    assert torch.isfinite(model(ids).logits).all()
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert run(cfg) == model_dir.parent  # same settings: finished already, left untouched
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(RunDirError, match=r"upscale.m: 1 -> 2(.|\n)*run.overwrite=true"):
        run(_cfg(tmp_path, "scale=tiny", f"paths.cache={cache_dir}", "upscale.m=2"))


@pytest.mark.parametrize("m", [4, 9, -1])
def test_bad_m_leaves_nothing(src, tmp_path, m):
    cfg = _cfg(tmp_path, f"model.pretrained={src}", f"upscale.m={m}")
    with pytest.raises(ValueError, match=r"0 <= m < n=4" if m >= 0 else
                       r"`upscale.m` must be an integer >= 0 \(got -1\)"):
        run(cfg)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs" / "paper").iterdir())


def test_missing_and_corrupt_safetensors(src, tmp_path):
    shard = sorted(src.glob("model-*.safetensors"))[1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match=f"corrupt safetensors file .*{shard.name}"):
        run(_cfg(tmp_path, f"model.pretrained={src}"))
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"missing safetensors file .*{shard.name}"):
        run(_cfg(tmp_path, f"model.pretrained={src}"))
    assert not (tmp_path / "runs").exists()  # checked before anything is created


def test_parent_run_without_model_names_the_command(tmp_path):
    (tmp_path / "runs" / "paper" / "sft_v3").mkdir(parents=True)
    with pytest.raises(MissingParentError, match=r"python -m solar.train \+ablation=sft_v3"):
        run(_cfg(tmp_path, "model.pretrained=sft_v3", "run.name=dus2"))
    assert not (tmp_path / "runs" / "paper" / "dus2").exists()


def test_cli_exit_code_and_training_ablation_refused(src, tmp_path):
    runs = tmp_path / "runs"
    bad = subprocess.run([sys.executable, "-m", "solar.upscale", f"paths.runs={runs}",
                          f"model.pretrained={src}", "upscale.m=7"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: `upscale.m`=7")
    assert "Traceback" not in bad.stderr and not (runs / "paper" / "dus").exists()
    other = subprocess.run([sys.executable, "-m", "solar.upscale", "+ablation=sft_v3"],
                           capture_output=True, text=True)
    assert other.returncode == 2 and "python -m solar.train +ablation=sft_v3" in other.stderr


def test_tiny_base_and_tokenizer_caches_are_keyed_by_their_content(tmp_path, monkeypatch):
    """A cache written by another version of the tiny world (other texts -> another tokenizer ->
    another vocabulary) is never read as this one: it once fed a stale tokenizer to every run."""
    import solar.data.tiny.tokenizer as tiny_tok
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from solar.weights.tiny_base import materialise_tiny

    arch = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml").architecture)
    first = materialise_tiny(arch, 0, tmp_path)
    assert materialise_tiny(arch, 0, tmp_path) == first   # reused while nothing changed
    monkeypatch.setattr(tiny_tok, "all_texts", lambda: ["The zorp is red.", "3 plus 4 is 7."])
    other = materialise_tiny(arch, 0, tmp_path)
    assert other != first
    assert len(AutoTokenizer.from_pretrained(other)) < len(AutoTokenizer.from_pretrained(first))
    assert json.loads((other / "config.json").read_text())["vocab_size"] == len(
        AutoTokenizer.from_pretrained(other))
