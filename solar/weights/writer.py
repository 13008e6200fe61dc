"""Write tensors into size-bounded safetensors shards plus an index, one tensor at a time.

Every output tensor's dtype and shape is known before any data is produced, so each shard's header
is written first and the data streamed after it: memory holds only the tensor being produced,
whatever the shard size. Copies of unchanged tensors go file to file inside the kernel
(``copy_file_range``), never through Python buffers.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from solar.weights.checkpoint import DTYPE_SIZES, INDEX_NAME, SINGLE_NAME, TensorInfo

COPY_CHUNK = 64 * 1024 * 1024


@dataclass
class OutputTensor:
    """One output tensor: either a byte copy of ``source`` or the result of ``compute()``."""
    name: str
    dtype: str
    shape: tuple[int, ...]
    source: TensorInfo | None = None
    compute: Callable[[], object] | None = None  # returns a contiguous torch tensor

    @property
    def nbytes(self) -> int:
        n = DTYPE_SIZES[self.dtype]
        for d in self.shape:
            n *= d
        return n


def parse_size(size: int | str) -> int:
    """'5GB' / '500MB' / '2GiB' / 123 → bytes (decimal units as in Hugging Face shard sizes)."""
    if isinstance(size, int):
        return size
    text = str(size).strip().upper().replace(" ", "")
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9,
             "K": 10**3, "M": 10**6, "G": 10**9, "B": 1}
    for unit, mult in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * mult)
    return int(text)


def plan_shards(tensors: list[OutputTensor], max_shard_bytes: int) -> list[list[OutputTensor]]:
    """Greedy split in output order; a tensor larger than the bound gets a shard of its own."""
    shards: list[list[OutputTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def _header(shard: list[OutputTensor]) -> bytes:
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for t in shard:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape),
                          "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep tensor data 8-byte aligned, as safetensors does
    return struct.pack("<Q", len(raw)) + raw


def _copy_bytes(src: TensorInfo, dst_fd: int) -> None:
    with open(src.file, "rb") as f:
        offset, left = src.start, src.nbytes
        try:
            while left:
                n = os.copy_file_range(f.fileno(), dst_fd, min(left, 1 << 30), offset)
                if n == 0:
                    raise OSError(f"unexpected end of {src.file} in tensor '{src.name}'")
                offset, left = offset + n, left - n
        except OSError as err:  # e.g. EXDEV on old kernels: fall back to a bounded buffer
            if err.errno is None:
                raise
            while left:
                chunk = os.pread(f.fileno(), min(left, COPY_CHUNK), offset)
                _write_all(dst_fd, memoryview(chunk))
                offset, left = offset + len(chunk), left - len(chunk)


def _write_tensor(t: OutputTensor, f) -> None:
    if t.source is not None:
        _copy_bytes(t.source, f.fileno())
        return
    out = t.compute()
    if tuple(out.shape) != t.shape:
        raise RuntimeError(f"tensor '{t.name}': computed shape {tuple(out.shape)} != {t.shape}")
    import torch

    data = out.contiguous().view(torch.uint8).numpy()  # no copy: the buffer goes to write()
    if data.nbytes != t.nbytes:
        raise RuntimeError(f"tensor '{t.name}': computed {data.nbytes} bytes, expected {t.nbytes}")
    _write_all(f.fileno(), memoryview(data).cast("B"))


def _write_all(fd: int, buf: memoryview) -> None:
    while buf:  # write(2) may stop short (at most ~2 GiB per call on Linux)
        buf = buf[os.write(fd, buf):]


def write_checkpoint(directory: str | os.PathLike, tensors: Iterable[OutputTensor],
                     max_shard_bytes: int | str = "5GB", progress: bool = True) -> list[Path]:
    """Write ``model.safetensors``, or ``model-0000i-of-0000k.safetensors`` shards + an index."""
    directory = Path(directory)
    tensors = list(tensors)
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"output tensor '{dup}' is produced twice")
    shards = plan_shards(tensors, parse_size(max_shard_bytes))
    k = len(shards)
    files = [SINGLE_NAME] if k == 1 else [f"model-{i + 1:05d}-of-{k:05d}.safetensors"
                                          for i in range(k)]
    bar = tqdm(total=len(tensors), unit="tensor", disable=not progress, desc="writing")
    for fname, shard in zip(files, shards):
        # Wider dtypes first keeps every tensor aligned to its element size.
        shard.sort(key=lambda t: -DTYPE_SIZES[t.dtype])
        with open(directory / fname, "wb", buffering=0) as f:  # unbuffered: fd writes interleave
            _write_all(f.fileno(), memoryview(_header(shard)))
            for t in shard:
                _write_tensor(t, f)
                bar.update(1)
    bar.close()
    if k > 1:
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)},
                 "weight_map": {t.name: fname for fname, shard in zip(files, shards)
                                for t in shard}}
        (directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return [directory / f for f in files]
