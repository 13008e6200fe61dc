"""The experiment logger: W&B (offline automatically without an API key) or CSV."""

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


def make_logger(logger_cfg, *, run_dir: Path, name: str, group: str, job_type: str, config: dict):
    # imported here: wandb_mode() alone (solar.evaluate, solar.report) must not load Lightning
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    if logger_cfg.name == "csv":
        return CSVLogger(save_dir=str(run_dir), name="metrics", version="")
    mode = wandb_mode(logger_cfg.get("mode", "auto"))
    if mode == "offline":
        print(f"W&B offline (no API key): upload later with `wandb sync {run_dir}/wandb/offline-run-*`")
    return WandbLogger(project=logger_cfg.project, entity=logger_cfg.get("entity"), name=name,
                       group=group, job_type=job_type, save_dir=str(run_dir), mode=mode,
                       config=config)
