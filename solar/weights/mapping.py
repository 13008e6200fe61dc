"""Zero-copy tensor views of a safetensors file, dropped from memory as soon as they are used.

A merge reads every input byte once. Copying it into a fresh buffer (pread) costs a memcpy plus a
zero-filled page fault per 4 KiB of new memory; mapping the page cache costs neither. Mapped pages
count towards the process RSS, so each tensor's pages are unmapped again when it is released:
memory stays bounded by the tensors in flight, whatever the file size. Every tensor's extent was
checked against the file size when the header was read (a file truncated while mapped would
fault, as under any mmap reader).
"""

from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from solar.weights.checkpoint import TensorInfo

# Linux >= 5.14: fault a whole range in with one call instead of one fault per 16 pages.
MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)


class MappedFile:
    """One .safetensors file mapped copy-on-write (a stray in-place op can never touch the file)."""

    def __init__(self, path: str | os.PathLike):
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self._populate = True

    def _pages(self, info: TensorInfo) -> tuple[int, int]:
        start = info.start - info.start % mmap.PAGESIZE  # madvise needs a page-aligned start
        return start, info.end - start

    def tensor(self, info: TensorInfo, dtype):
        """A view of ``info``'s bytes as a torch tensor; valid until ``release(info)``."""
        import torch

        if info.nbytes == 0:
            return torch.empty(info.shape, dtype=dtype)
        if self._populate:
            try:
                self._map.madvise(MADV_POPULATE_READ, *self._pages(info))
            except OSError:  # older kernel: the pages fault in on first touch instead
                self._populate = False
        numel = info.nbytes // dtype.itemsize
        return torch.frombuffer(self._map, dtype=dtype, count=numel,
                                offset=info.start).view(info.shape)

    def release(self, info: TensorInfo) -> None:
        """Unmap the tensor's pages (the page cache keeps them; a later touch maps them again)."""
        if info.nbytes:
            self._map.madvise(mmap.MADV_DONTNEED, *self._pages(info))

    def close(self) -> None:
        try:
            self._map.close()
        except BufferError:  # a tensor view is still alive: the map goes when it does
            pass
