"""Depth up-scaling as a streamed byte copy: no tensor is ever decoded or held in memory."""

from __future__ import annotations

import json
from pathlib import Path

from solar.weights.checkpoint import Checkpoint, CheckpointError
from solar.weights.files import copy_carried_files
from solar.weights.layers import count_layers, dus_source_layers, parse_layer, resolve_m
from solar.weights.writer import OutputTensor, write_checkpoint

# Config keys holding one entry per decoder block (e.g. Qwen2/Gemma sliding-window layer types).
PER_LAYER_KEYS = ("layer_types",)


def dus_tensors(ckpt: Checkpoint, n: int, m: int) -> list[OutputTensor]:
    """Output tensors in source order, the block stack replaced by the up-scaled one."""
    block0 = [(p, name) for name in ckpt.names if (p := parse_layer(name)) and p.index == 0]
    out: list[OutputTensor] = []
    stack_placed = False
    for name in ckpt.names:
        if parse_layer(name) is None:
            info = ckpt.tensors[name]
            out.append(OutputTensor(name, info.dtype, info.shape, source=info))
        elif not stack_placed:
            stack_placed = True
            for j, src in enumerate(dus_source_layers(n, m)):
                for parsed, _ in block0:
                    info = ckpt.tensors[parsed.renumber(src)]
                    out.append(OutputTensor(parsed.renumber(j), info.dtype, info.shape,
                                            source=info))
    return out


def upscaled_config(config: dict, n: int, m: int) -> dict:
    config = dict(config)
    sources = dus_source_layers(n, m)
    config["num_hidden_layers"] = len(sources)
    for key in PER_LAYER_KEYS:
        if isinstance(config.get(key), list) and len(config[key]) == n:
            config[key] = [config[key][i] for i in sources]
    return config


def upscale_checkpoint(src: str | Path, out: str | Path, *, m: int | None = None,
                       layers: int | None = None, max_shard_bytes: int | str = "5GB",
                       progress: bool = True) -> dict:
    """Write the DUS of checkpoint ``src`` into the (existing, empty) directory ``out``.

    Returns the parameters for the lineage: n, m, s and the source block of each output block.
    """
    ckpt = Checkpoint(src)
    n = count_layers(ckpt.names, str(ckpt.dir))
    declared = ckpt.config.get("num_hidden_layers")
    if declared is not None and declared != n:
        raise CheckpointError(f"{ckpt.dir}: config.json says num_hidden_layers={declared} but "
                              f"the weights hold {n} blocks")
    m = resolve_m(n, m, layers)
    out = Path(out)
    write_checkpoint(out, dus_tensors(ckpt, n, m), max_shard_bytes, progress)
    (out / "config.json").write_text(json.dumps(upscaled_config(ckpt.config, n, m), indent=2)
                                     + "\n")
    copy_carried_files(ckpt.dir, out)
    return {"n": n, "m": m, "s": 2 * (n - m), "source_layers": dus_source_layers(n, m)}
