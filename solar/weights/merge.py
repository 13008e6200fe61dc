"""Streamed model merging: check the inputs agree, then merge and write one tensor at a time."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

from solar.weights.checkpoint import Checkpoint, CheckpointError
from solar.weights.files import copy_carried_files
from solar.weights.layers import parse_layer
from solar.weights.writer import OutputTensor, write_checkpoint

METHODS = ("average", "slerp", "ties", "dare")
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def resolve_setting(setting: Any, name: str, position: float) -> Any:
    """A parameter's value for tensor ``name`` (mergekit semantics, so configs port).

    A scalar applies everywhere; a list of numbers is a gradient interpolated piecewise-linearly
    at ``position`` (layer index / (layers − 1); 0 for embeddings, final norm and head); a list of
    ``{filter, value}`` picks the first entry whose filter is a substring of the name (no filter
    or ``*``: matches all).
    """
    if isinstance(setting, (int, float)):
        return setting
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, (list, tuple)) and setting:
        if all(isinstance(v, (int, float)) for v in setting):
            scaled = position * (len(setting) - 1)
            i0 = int(scaled)
            i1 = min(len(setting) - 1, i0 + 1)
            return (1 - (scaled - i0)) * setting[i0] + (scaled - i0) * setting[i1]
        for cond in setting:
            filt = cond.get("filter")
            if filt in (None, "*") or filt in name:
                return resolve_setting(cond["value"], name, position)
        raise ValueError(f"no entry of {setting} matches tensor '{name}' (add one without filter)")
    raise ValueError(f"cannot read parameter setting {setting!r}")


def layer_position(name: str, n_layers: int) -> float:
    parsed = parse_layer(name)
    if parsed is None:
        return 0.0
    return parsed.index / (n_layers - 1) if n_layers > 1 else 1.0


def check_compatible(ckpts: list[Checkpoint]) -> None:
    """Same architecture, tensor names and shapes; the error names the first tensor that differs."""
    first = ckpts[0]
    for other in ckpts[1:]:
        for key in ("model_type", "architectures"):
            if first.config.get(key) != other.config.get(key):
                raise CheckpointError(f"architectures differ: {first.dir} has {key}="
                                      f"{first.config.get(key)}, {other.dir} has "
                                      f"{other.config.get(key)}")
        for name in first.names:
            if name not in other.tensors:
                raise CheckpointError(f"tensor '{name}' of {first.dir} is missing from {other.dir}")
            a, b = first.tensors[name], other.tensors[name]
            if a.shape != b.shape:
                raise CheckpointError(f"tensor '{name}' has shape {list(a.shape)} in {first.dir} "
                                      f"but {list(b.shape)} in {other.dir}")
        extra = [n for n in other.names if n not in first.tensors]
        if extra:
            raise CheckpointError(f"tensor '{extra[0]}' of {other.dir} is missing from {first.dir}")


def validate(method: str, n_models: int, weights: list[float] | None, normalize: bool,
             base: bool) -> list[float]:
    if method not in METHODS:
        raise ValueError(f"`merge.method`={method!r} is not one of {METHODS}")
    if method == "slerp" and n_models != 2:
        raise ValueError(f"slerp merges exactly two models, got {n_models} in `merge.models`")
    if n_models < 1 or (n_models < 2 and method == "average"):
        raise ValueError(f"`merge.models` needs at least {2 if method == 'average' else 1} models")
    if method in ("ties", "dare") and not base:
        raise ValueError(f"{method} merges task vectors relative to `merge.base`: set it")
    weights = [1.0] * n_models if weights is None else [float(w) for w in weights]
    if len(weights) != n_models:
        raise ValueError(f"`merge.weights` has {len(weights)} entries for {n_models} models")
    if method != "slerp" and normalize and not sum(weights) > 0:
        raise ValueError(f"`merge.weights` {weights} do not sum to a positive number")
    return weights


def _compute(method, name, views, base_view, weights, params, position, out_dtype):
    from solar.weights import merge_methods as mm

    def value(key):
        return resolve_setting(params[key], name, position)

    if method == "average":
        out = mm.average(views, weights, params.get("normalize", True))
    elif method == "slerp":
        out = mm.slerp(views[0], views[1], float(value("t")))
    elif method == "ties":
        out = mm.ties(base_view, views, weights, float(value("density")),
                      params.get("normalize", True))
    else:
        import torch

        gen = torch.Generator().manual_seed(int(params.get("seed", 0)) + zlib.crc32(name.encode()))
        out = mm.dare(base_view, views, weights, float(value("drop_rate")), gen,
                      params.get("rescale", True), params.get("consensus", False),
                      params.get("normalize", True))
    return out.to(out_dtype)


def merge_checkpoints(model_dirs: list[str | Path], out: str | Path, *, method: str,
                      weights: list[float] | None = None, params: dict | None = None,
                      base_dir: str | Path | None = None, max_shard_bytes: int | str = "5GB",
                      progress: bool = True) -> dict:
    """Merge ``model_dirs`` (with ``base_dir`` for ties/dare) into the empty directory ``out``."""
    params = dict(params or {})
    weights = validate(method, len(model_dirs), weights, params.get("normalize", True),
                       base_dir is not None)
    ckpts = [Checkpoint(d) for d in model_dirs]
    base = Checkpoint(base_dir) if base_dir is not None and method in ("ties", "dare") else None
    check_compatible(ckpts + ([base] if base else []))
    first = ckpts[0]
    n_layers = int(first.config.get("num_hidden_layers") or 1)
    from solar.weights.checkpoint import TORCH_DTYPES

    tensors = []
    for name in first.names:
        info = first.tensors[name]
        if info.dtype not in FLOAT_DTYPES:  # integer buffers are not merged: carried from model 1
            tensors.append(OutputTensor(name, info.dtype, info.shape, source=info))
            continue

        def compute(name=name, dtype=info.dtype):
            views = [ck.view(name) for ck in ckpts]
            return _compute(method, name, views, base.view(name) if base else None, weights,
                            params, layer_position(name, n_layers), TORCH_DTYPES[dtype])

        tensors.append(OutputTensor(name, info.dtype, info.shape, compute=compute))
    out = Path(out)
    try:
        write_checkpoint(out, tensors, max_shard_bytes, progress)
    finally:
        for ck in ckpts + ([base] if base else []):
            ck.close()
    (out / "config.json").write_text(json.dumps(first.config, indent=2) + "\n")
    copy_carried_files(first.dir, out)
    return {"method": method, "weights": weights, **params}
