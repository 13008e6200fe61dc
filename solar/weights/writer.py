"""Write tensors into size-bounded safetensors shards plus an index, one tensor at a time.

Every output tensor's dtype and shape is known before any data is produced, so each shard's header
is written first and the data streamed after it: memory holds only the tensors in flight (see
background.py), whatever the shard size. Copies of unchanged tensors go file to file inside the
kernel (``copy_file_range``), never through Python buffers.
"""

from __future__ import annotations

import json
import os
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from collections.abc import Callable, Iterable

from tqdm import tqdm

from solar.weights.background import BackgroundWriter
from solar.weights.checkpoint import DTYPE_SIZES, INDEX_NAME, SINGLE_NAME, TensorInfo

COPY_CHUNK = 64 * 1024 * 1024


@dataclass
class OutputTensor:
    """One output tensor: either a byte copy of ``source`` or the result of ``compute()``."""
    name: str
    dtype: str
    shape: tuple[int, ...]
    source: TensorInfo | None = None
    # Fills its argument, a tensor of this dtype and shape lent by the writer: computing in place
    # into a reused buffer spares an allocation (and its page faults) per tensor.
    compute: Callable[[object], None] | None = None

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


def _produce(t: OutputTensor, fd: int, writer: BackgroundWriter) -> None:
    """Queue tensor ``t``'s bytes for ``fd``: a kernel copy, or computed into a lent buffer."""
    if t.source is not None:
        writer.submit(partial(_copy_bytes, t.source, fd))
        return
    from solar.weights.checkpoint import TORCH_DTYPES

    slot = writer.buffer()
    data = slot[: t.nbytes]
    try:
        t.compute(data.view(TORCH_DTYPES[t.dtype]).view(t.shape))
    except BaseException:
        writer.submit(lambda: None, slot)  # hand the buffer back before giving up
        raise
    writer.submit(partial(_write_all, fd, memoryview(data.numpy())), slot)


@contextmanager
def _leave_a_core(computing: bool):
    """While tensors are computed, torch leaves one core to the writer thread.

    With every core in torch's pool the writer's kernel copies preempt an arithmetic thread that
    the others then spin-wait for; one thread fewer costs little on a memory-bound merge.
    """
    if not computing:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - 1))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    computed = [t.nbytes for t in tensors if t.source is None]
    fds: list[int] = []
    bar = tqdm(total=len(tensors), unit="tensor", disable=not progress, desc="writing")
    try:
        with BackgroundWriter(max(computed, default=0)) as writer, _leave_a_core(bool(computed)):
            for fname, shard in zip(files, shards):
                # Wider dtypes first keeps every tensor aligned to its element size.
                shard.sort(key=lambda t: -DTYPE_SIZES[t.dtype])
                fd = os.open(directory / fname, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                fds.append(fd)
                writer.submit(partial(_write_all, fd, memoryview(_header(shard))))
                for t in shard:
                    _produce(t, fd, writer)
                    bar.update(1)
    finally:
        for fd in fds:  # after the writer thread has finished with them
            os.close(fd)
        bar.close()
    if k > 1:
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)},
                 "weight_map": {t.name: fname for fname, shard in zip(files, shards)
                                for t in shard}}
        (directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return [directory / f for f in files]
