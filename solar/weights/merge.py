"""Streamed model merging: check the inputs agree, then merge and write one tensor at a time.

Inputs are memory-mapped views (no copy); Average and SLERP compute straight into the writer's
output buffer, so the hot path allocates nothing per tensor.
"""

from __future__ import annotations

import json
import math
import zlib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from solar.weights.checkpoint import Checkpoint, CheckpointError
from solar.weights.files import copy_carried_files
from solar.weights.layers import parse_layer
from solar.weights.writer import OutputTensor, write_checkpoint

METHODS = ("average", "slerp", "ties", "dare")
# Each method's defaults are those of the mergekit method of the same name, so a mergekit YAML
# translated key for key (README "Model merging") gives the same tensors. mergekit names:
# average = linear, dare = dare_linear (dare_ties with consensus); mergekit's DARE `density` is
# 1 − drop_rate. `weights` null = 1 per model (mergekit requires a weight).
DEFAULTS = {
    "average": {"normalize": True},
    "slerp": {},
    "ties": {"density": 1.0, "normalize": True},
    "dare": {"drop_rate": 0.0, "rescale": True, "consensus": False, "normalize": False, "seed": 0},
}
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
        raise ValueError(f"`merge.base` is not set: {method} merges task vectors relative to a "
                         "base model; set merge.base=<run name | path | hub id>")
    weights = [1.0] * n_models if weights is None else [float(w) for w in weights]
    if len(weights) != n_models:
        raise ValueError(f"`merge.weights` has {len(weights)} entries for {n_models} models")
    if method != "slerp" and normalize and not sum(weights) > 0:
        raise ValueError(f"`merge.weights` {weights} do not sum to a positive number")
    return weights


class Scratch:
    """Reused float work buffers, one per role, grown to the largest tensor asked for.

    Half-precision inputs are upcast here rather than into fresh tensors: a new allocation per
    tensor pays a zero-filled page fault per 4 KiB, more than the arithmetic itself.
    """

    def __init__(self):
        self._bufs: dict[str, Any] = {}

    def get(self, role: str, dtype, shape):
        import torch

        nbytes = dtype.itemsize * math.prod(shape)
        buf = self._bufs.get(role)
        if buf is None or buf.numel() < nbytes:
            buf = self._bufs[role] = torch.empty(nbytes, dtype=torch.uint8)
        return buf[:nbytes].view(dtype).view(shape)


def _compute(method, name, views, base_view, weights, params, position, out, scratch):
    """Merge tensor ``name`` into ``out`` (stored dtype); float32 math, float64 kept."""
    import torch

    from solar.weights import merge_methods as mm

    def value(key):
        return resolve_setting(params[key], name, position)

    if method in ("average", "slerp"):
        dtype = torch.float64 if views[0].dtype == torch.float64 else torch.float32
        # Inputs in the compute dtype: mapped views as they are, others upcast into reused
        # buffers; the same operations as on fresh copies, so the same bits.
        work = [v if v.dtype == dtype else scratch.get(f"in{i}", dtype, v.shape).copy_(v)
                for i, v in enumerate(views)]
        acc = out if out.dtype == dtype else scratch.get("acc", dtype, out.shape)
        if method == "average":
            mm.average(work, weights, params["normalize"], out=acc)
        else:
            mm.slerp(work[0], work[1], float(value("t")), out=acc)
        if acc is not out:
            out.copy_(acc)  # cast back to the stored dtype (round to nearest even)
        return
    if method == "ties":
        merged = mm.ties(base_view, views, weights, float(value("density")), params["normalize"])
    else:
        gen = torch.Generator().manual_seed(int(params["seed"]) + zlib.crc32(name.encode()))
        merged = mm.dare(base_view, views, weights, float(value("drop_rate")), gen,
                         params["rescale"], params["consensus"], params["normalize"])
    out.copy_(merged)


def merge_checkpoints(model_dirs: list[str | Path], out: str | Path, *, method: str,
                      weights: list[float] | None = None, params: dict | None = None,
                      base_dir: str | Path | None = None, max_shard_bytes: int | str = "5GB",
                      progress: bool = True) -> dict:
    """Merge ``model_dirs`` (with ``base_dir`` for ties/dare) into the empty directory ``out``.

    ``params`` not given take mergekit's defaults for the method (``DEFAULTS``).
    """
    if method not in METHODS:
        raise ValueError(f"`merge.method`={method!r} is not one of {METHODS}")
    params = {**DEFAULTS[method], **{k: v for k, v in (params or {}).items() if v is not None}}
    weights = validate(method, len(model_dirs), weights, params.get("normalize", True),
                       base_dir is not None)
    ckpts = [Checkpoint(d) for d in model_dirs]
    base = Checkpoint(base_dir) if base_dir is not None and method in ("ties", "dare") else None
    check_compatible(ckpts + ([base] if base else []))
    first = ckpts[0]
    n_layers = int(first.config.get("num_hidden_layers") or 1)
    scratch = Scratch()

    tensors = []
    for name in first.names:
        info = first.tensors[name]
        if info.dtype not in FLOAT_DTYPES:  # integer buffers are not merged: carried from model 1
            tensors.append(OutputTensor(name, info.dtype, info.shape, source=info))
            continue

        def compute(out, name=name):
            # Zero-copy views of the inputs, unmapped as soon as the result is in `out`.
            with ExitStack() as stack:
                views = [stack.enter_context(ck.mapped(name)) for ck in ckpts]
                base_view = stack.enter_context(base.mapped(name)) if base else None
                _compute(method, name, views, base_view, weights, params,
                         layer_position(name, n_layers), out, scratch)

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
