"""One background thread that runs write jobs in order, fed from a small pool of output buffers.

Producing a merged tensor (reads + arithmetic) and writing the previous one (the kernel copying it
into the page cache) use different resources; on one thread they add up. Here the producer fills
one buffer while the writer drains the other: torch ops and os.write both release the GIL, so the
two overlap. Two buffers bound the memory: the producer waits when both are still being written.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class BackgroundWriter:
    """``submit`` jobs (run in order on one thread); ``buffer`` lends one of ``slots`` buffers."""

    def __init__(self, slot_bytes: int, slots: int = 2):
        self._jobs: queue.Queue = queue.Queue()  # unbounded: memory is bounded by the slots
        self._free: queue.Queue = queue.Queue()
        for _ in range(slots):
            self._free.put(None)  # allocated on first use: byte copies (DUS) never need one
        self._slot_bytes = slot_bytes
        self._error: BaseException | None = None
        self._abort = False
        self._thread = threading.Thread(target=self._run, name="solar-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, slot = item
            try:
                if self._error is None and not self._abort:
                    job()
            except BaseException as err:  # noqa: BLE001 -- handed to the producer at its next call
                self._error = err
            finally:
                if slot is not None:
                    self._free.put(slot)  # always returned, so the producer never waits forever

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def buffer(self):
        """A uint8 torch buffer of ``slot_bytes``; blocks while every buffer is being written."""
        self._check()
        slot = self._free.get()
        self._check()
        if slot is None:
            import torch

            slot = torch.empty(self._slot_bytes, dtype=torch.uint8)
        return slot

    def submit(self, job: Callable[[], object], slot=None) -> None:
        """Run ``job`` after every job submitted before it; then give ``slot`` back to the pool."""
        self._check()
        self._jobs.put((job, slot))

    def close(self, abort: bool = False) -> None:
        """Wait for the queued jobs (or skip them with ``abort``); re-raise a writer error."""
        self._abort = abort
        self._jobs.put(None)
        self._thread.join()
        if not abort:
            self._check()

    def __enter__(self) -> BackgroundWriter:  # noqa: PYI034 -- never subclassed
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abort=exc_type is not None)
