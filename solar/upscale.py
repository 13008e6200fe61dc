"""Depth up-scaling (SOLAR Sec. 2): python -m solar.upscale [scale=tiny] [upscale.m=8].

Output: s = 2(n − m) blocks = blocks [0, n−m) of the model followed by blocks [m, n) of a copy,
streamed from safetensors to safetensors (see solar/weights). Writes ``<run.dir>/model`` plus
``lineage.json`` and the resolved ``config.yaml``, atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from solar.cli import run_command
from solar.config import validate_upscale
from solar.runs import (CONF_DIR, RUN_FILE, MissingParentError, atomic_dir, plan_run,
                        refuse_other_entry, resolve_model, run_record, write_json, write_lineage)
from solar.weights.checkpoint import CheckpointError

EXPECTED = (CheckpointError, MissingParentError, FileExistsError, FileNotFoundError, ValueError)


def source_dir(cfg: DictConfig) -> tuple[Path, str]:
    """The input checkpoint directory and how lineage names it."""
    from solar.weights.files import local_checkpoint

    if cfg.model.pretrained is None:  # scale=tiny: the seeded tiny model, materialised once
        from solar.weights.tiny_base import materialise_tiny

        arch = OmegaConf.to_container(cfg.model.architecture, resolve=True)
        path = materialise_tiny(arch, int(cfg.model.init_seed), cfg.paths.cache)
        return path, f"{cfg.model.name} (seed {cfg.model.init_seed})"
    ref = resolve_model(str(cfg.model.pretrained), cfg.paths.runs, cfg.scale.name)
    return local_checkpoint(ref), str(cfg.model.pretrained)


def run(cfg: DictConfig) -> Path:
    from solar.weights.dus import upscale_checkpoint

    refuse_other_entry(cfg.get("ablation_name"), "upscale")
    if cfg.model.get("trust_remote_code"):
        raise ValueError("`model.trust_remote_code` is not needed by DUS (weights are copied)")
    validate_upscale(cfg)
    plan = plan_run(cfg.run.dir, cfg, overwrite=bool(cfg.run.overwrite))
    if plan == "finished":  # same input and settings: the copy would be byte for byte the same
        print(f"{cfg.run.dir} is up-scaled already with these settings (run.overwrite=true "
              "redoes it)")
        return Path(cfg.run.dir)
    src, parent = source_dir(cfg)
    with atomic_dir(cfg.run.dir, overwrite=plan != "new") as tmp:
        write_json(tmp / RUN_FILE, run_record(cfg))
        (tmp / "model").mkdir()
        info = upscale_checkpoint(src, tmp / "model", m=cfg.upscale.m, layers=cfg.upscale.layers,
                                  max_shard_bytes=cfg.upscale.shard_size,
                                  progress=bool(cfg.upscale.progress))
        write_lineage(tmp, method="dus", parents=[parent],
                      params={**info, "source_dir": str(src)})
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    print(f"up-scaled {parent}: n={info['n']} m={info['m']} -> {info['s']} layers in "
          f"{cfg.run.dir}/model")
    return Path(cfg.run.dir)


@hydra.main(config_path=str(CONF_DIR), config_name="upscale", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_command(main, "upscale")
