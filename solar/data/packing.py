"""Packing several examples into rows of at most ``max_length`` tokens, with no cross-attention.

Each example's position ids restart at 0. transformers builds a block-diagonal causal mask from
those restarts when no attention_mask is passed (sdpa/eager, exact on CPU) and flash-attn varlen
uses them on GPU, so a packed row computes exactly what its examples compute one by one.
Rows are formed by best-fit decreasing: longest example first, into the fullest row it still fits.
"""

from __future__ import annotations

import bisect

from solar.data.encode import IGNORE


def pack(lengths: list[int], max_length: int) -> list[list[int]]:
    """Group example indices into rows whose total length is <= max_length (deterministic)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (space left, row id)
    for i in order:
        n = lengths[i]
        if n > max_length:
            raise ValueError(f"example {i} has {n} tokens > max_length {max_length}; truncate first")
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            space, row = free.pop(k)
        else:
            space, row = max_length, len(rows)
            rows.append([])
        rows[row].append(i)
        if space - n > 0:
            bisect.insort(free, (space - n, row))
    return rows


def concat_row(examples: list[dict]) -> dict:
    """One packed row: concatenated ids and labels, position ids restarting per example.

    Each example's first label is dropped (-100): after the shift it would be predicted from the
    previous example's last token, a cross-example target (the unpacked run never has it either).
    """
    ids, labels, pos = [], [], []
    for ex in examples:
        ids += ex["input_ids"]
        labels += [IGNORE] + list(ex["labels"][1:])
        pos += list(range(len(ex["input_ids"])))
    return {"input_ids": ids, "labels": labels, "position_ids": pos}
