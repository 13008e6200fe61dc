"""The experiment logger: W&B (offline automatically without an API key) or CSV.

Both survive a resume: the W&B run id is kept in the stage directory (``resume.json``) and the
next attempt continues that run (``resume="allow"``); the CSV file keeps the rows of earlier
attempts (solar/csv_metrics.py).
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path


def wandb_mode(requested: str) -> str:
    """'auto' resolves to online with an API key (env or ~/.netrc), else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def make_logger(logger_cfg, *, run_dir: Path, name: str, group: str, job_type: str, config: dict,
                run_id: str | None = None):
    """``run_id``: the W&B run to continue (``resume="allow"``: created if it does not exist)."""
    # imported here: wandb_mode() alone (solar.evaluate, solar.report) must not load Lightning
    from lightning.pytorch.loggers import WandbLogger

    if logger_cfg.name == "csv":
        from solar.csv_metrics import ResumableCSVLogger

        return ResumableCSVLogger(save_dir=str(run_dir), name="metrics", version="",
                                  flush_logs_every_n_steps=1)
    mode = wandb_mode(logger_cfg.get("mode", "auto"))
    if mode == "offline":
        print(f"W&B offline (no API key): upload later with `wandb sync {run_dir}/wandb/offline-run-*`")
    return WandbLogger(project=logger_cfg.project, entity=logger_cfg.get("entity"), name=name,
                       group=group, job_type=job_type, save_dir=str(run_dir), mode=mode,
                       config=config, id=run_id, resume="allow" if run_id else None)
