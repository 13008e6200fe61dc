"""CSV metrics that survive a resume.

Lightning's CSVLogger deletes an existing metrics.csv when it starts and flushes every 100 steps,
so a killed and resumed run keeps only the rows after the resume. Here the file is kept, flushed
every step, and at each (re)start the rows of the steps about to be replayed since the last
checkpoint are dropped: every step appears exactly once.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv ("Previous log files ... will be
    deleted"); this one appends to it, with the header it already has."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])

    def drop_from(self, step: int) -> int:
        """Remove rows logged at ``step`` or later (replayed after a resume); return rows kept."""
        self.save()
        if not os.path.isfile(self.metrics_file_path):
            return 0
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if _step(r) is not None and _step(r) < step]
        tmp = self.metrics_file_path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(keep)
        os.replace(tmp, self.metrics_file_path)
        return len(keep)


def _step(row: dict) -> int | None:
    try:  # a row cut short by a kill has no readable step: it is dropped
        return int(row.get("step") or "")
    except ValueError:
        return None


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose file survives a resume; flushed every step, so a kill -9 loses no row
    before the last checkpoint."""

    @property
    def experiment(self) -> _KeepingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


class MetricsResume(L.Callback):
    """At the (re)start of fit, after the checkpoint is restored: drop the CSV rows of the steps
    about to be replayed and count the restart. After the first checkpoint of a run that
    replaced another: delete the replaced one (``on_checkpoint``)."""

    def __init__(self, on_start, on_checkpoint):
        self.on_start, self.on_checkpoint, self._pending = on_start, on_checkpoint, True

    def on_train_start(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:  # rank 0 only: the ranks share one metrics file
            if isinstance(logger, ResumableCSVLogger) and trainer.is_global_zero:
                logger.experiment.drop_from(trainer.global_step)
        self.on_start(trainer.global_step)

    def on_train_batch_end(self, trainer, *args) -> None:
        # ModelCheckpoint runs after the other callbacks: a checkpoint written at step k is
        # on disk at step k + 1 (or when fit ends)
        if self._pending and any(Path(trainer.checkpoint_callback.dirpath).glob("*.ckpt")):
            self._pending = False
            self.on_checkpoint()

    def on_train_end(self, trainer, pl_module) -> None:
        self.on_train_batch_end(trainer)
