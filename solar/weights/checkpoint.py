"""Read a Hugging Face safetensors checkpoint tensor by tensor, without instantiating a model.

Headers are parsed directly (8-byte length + JSON), so planning a transform costs no tensor I/O.
A tensor is then either copied byte for byte inside the kernel (DUS) or mapped for as long as it
is used (merges), so the process RSS stays bounded by the tensors in flight, whatever the model
size.
"""

from __future__ import annotations

import json
import os
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# safetensors dtype tag → bytes per element
DTYPE_SIZES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
               "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or incompatible; the message names the file or tensor."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in `file`
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse one .safetensors header and check it against the file size (catches truncation)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise CheckpointError(f"corrupt safetensors file {path}: shorter than its header")
            (hlen,) = struct.unpack("<Q", raw)
            if hlen > min(size - 8, MAX_HEADER_BYTES):
                raise CheckpointError(f"corrupt safetensors file {path}: header length {hlen} "
                                      f"does not fit in a {size}-byte file")
            header = json.loads(f.read(hlen))
    except FileNotFoundError:
        raise CheckpointError(f"missing safetensors file {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"corrupt safetensors file {path}: header is not JSON "
                              f"({err})") from None
    base = 8 + hlen
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = meta["dtype"], tuple(meta["shape"]), meta["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"corrupt safetensors file {path}: bad entry for tensor "
                                  f"'{name}'") from None
        numel = 1
        for d in shape:
            numel *= d
        if dtype not in DTYPE_SIZES or end - begin != numel * DTYPE_SIZES[dtype] or \
                base + end > size or begin < 0:
            raise CheckpointError(f"corrupt safetensors file {path}: tensor '{name}' "
                                  f"({dtype}, {list(shape)}, bytes {begin}-{end}) does not fit "
                                  f"the {size}-byte file")
        out[name] = TensorInfo(name, path, dtype, shape, base + begin, base + end)
    return out


class Checkpoint:
    """A checkpoint directory: config.json + model.safetensors or sharded files with an index."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        cfg = self.dir / "config.json"
        if not cfg.is_file():
            raise CheckpointError(f"{self.dir} has no config.json (not a Hugging Face checkpoint)")
        self.config = json.loads(cfg.read_text())
        self.tensors: dict[str, TensorInfo] = {}
        for shard in self._shard_files():
            self.tensors.update(read_header(shard))
        if not self.tensors:
            raise CheckpointError(f"{self.dir} holds no tensors")
        self._maps: dict = {}  # file → MappedFile, opened on first use

    def _shard_files(self) -> list[Path]:
        index = self.dir / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as err:
                raise CheckpointError(f"corrupt index {index}: {err}") from None
            files = list(dict.fromkeys(weight_map.values()))
            return [self.dir / f for f in files]
        files = sorted(self.dir.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{self.dir} has no *.safetensors weights "
                                  "(solar reads safetensors only)")
        return files

    @property
    def names(self) -> list[str]:
        return list(self.tensors)

    @contextmanager
    def mapped(self, name: str):
        """Tensor ``name`` as a zero-copy view of the file, unmapped when the block exits.

        The view must not outlive the block: its pages leave this process's memory there.
        """
        info = self.tensors[name]
        mapped = self._maps.get(info.file)
        if mapped is None:
            from solar.weights.mapping import MappedFile  # merges only: DUS never maps

            mapped = self._maps[info.file] = MappedFile(info.file)
        try:
            yield mapped.tensor(info, TORCH_DTYPES[info.dtype])
        finally:
            mapped.release(info)

    def view(self, name: str):
        """Tensor ``name`` in a buffer of its own (kept as long as the caller holds it)."""
        with self.mapped(name) as tensor:
            return tensor.clone()

    def close(self) -> None:
        for mapped in self._maps.values():
            mapped.close()
        self._maps.clear()


class _TorchDtypes(dict):
    """safetensors tag → torch dtype, built on first use so that DUS never imports torch."""

    def __missing__(self, tag: str):
        import torch

        table = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                 "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
                 "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
        self.update(table)
        if tag not in table:
            raise CheckpointError(f"dtype {tag} is not supported by merges")
        return table[tag]


TORCH_DTYPES = _TorchDtypes()
