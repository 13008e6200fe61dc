"""Decoder-block detection and the depth up-scaling (DUS) layer map (SOLAR Sec. 2).

Any decoder whose blocks are named ``<prefix>layers.<i>.<rest>`` (Llama, Mistral, Qwen2, Gemma …)
is handled; the prefix (``model.`` or, e.g., ``model.language_model.``) is read from the weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from solar.weights.checkpoint import CheckpointError

LAYER_RE = re.compile(r"^(?P<prefix>(?:.*\.)?layers)\.(?P<idx>\d+)\.(?P<rest>.+)$")


@dataclass(frozen=True)
class LayerName:
    prefix: str
    index: int
    rest: str

    def renumber(self, index: int) -> str:
        return f"{self.prefix}.{index}.{self.rest}"


def parse_layer(name: str) -> LayerName | None:
    m = LAYER_RE.match(name)
    return LayerName(m["prefix"], int(m["idx"]), m["rest"]) if m else None


def count_layers(names: list[str], where: str) -> int:
    """n, checked: one block prefix, blocks 0..n-1 all present with the same tensor names."""
    blocks: dict[int, set[str]] = {}
    prefixes = set()
    for name in names:
        parsed = parse_layer(name)
        if parsed:
            prefixes.add(parsed.prefix)
            blocks.setdefault(parsed.index, set()).add(parsed.rest)
    if not blocks:
        raise CheckpointError(f"{where}: no decoder blocks named '<prefix>layers.<i>.' found; "
                              "DUS needs a decoder whose blocks are model.layers.<i>.")
    if len(prefixes) > 1:
        raise CheckpointError(f"{where}: several block stacks {sorted(prefixes)}; DUS supports "
                              "one decoder stack")
    n = max(blocks) + 1
    for i in range(n):
        if blocks.get(i) != blocks[0]:
            raise CheckpointError(f"{where}: block {i} is missing or differs from block 0 "
                                  f"(tensors {sorted(blocks.get(i, set()) ^ blocks[0])[:3]})")
    return n


def resolve_m(n: int, m: int | None, layers: int | None) -> int:
    """Layers dropped per copy, from ``m`` or from the target depth s = 2(n − m)."""
    if m is None and layers is None:
        raise ValueError("set `upscale.m` (layers dropped per copy) or `upscale.layers` (target "
                         "depth s = 2(n - m))")
    if layers is not None:
        if layers % 2 or not 0 < layers <= 2 * n:
            raise ValueError(f"`upscale.layers`={layers} is not an even depth in (0, {2 * n}] "
                             f"for an n={n}-layer model (s = 2(n - m))")
        from_layers = n - layers // 2
        if m is not None and m != from_layers:
            raise ValueError(f"`upscale.m`={m} and `upscale.layers`={layers} disagree "
                             f"(s = 2(n - m) gives m={from_layers})")
        m = from_layers
    if not 0 <= m < n:
        raise ValueError(f"`upscale.m`={m} must satisfy 0 <= m < n={n} (layers dropped per copy)")
    return m


def dus_source_layers(n: int, m: int) -> list[int]:
    """Source block of each output block: [0, n−m) of the original, then [m, n) of the copy."""
    return list(range(n - m)) + list(range(m, n))
