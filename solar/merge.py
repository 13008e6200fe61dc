"""Model merging (SOLAR Tables 3, 4, 7): python -m solar.merge +ablation=merge_v1 [scale=tiny].

Average / SLERP / TIES / DARE, streamed tensor by tensor from safetensors (see solar/weights).
Writes ``<run.dir>/model`` plus ``lineage.json`` and the resolved ``config.yaml``, atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from solar.cli import run_command
from solar.config import validate_merge
from solar.runs import (CONF_DIR, RUN_FILE, MissingParentError, atomic_dir, plan_run,
                        refuse_other_entry, resolve_model, run_record, write_json, write_lineage)
from solar.weights.checkpoint import CheckpointError

EXPECTED = (CheckpointError, MissingParentError, FileExistsError, FileNotFoundError, ValueError)
NOT_PARAMS = ("method", "models", "base", "weights")


def run(cfg: DictConfig) -> Path:
    from solar.weights.files import local_checkpoint
    from solar.weights.merge import merge_checkpoints, validate

    refuse_other_entry(cfg.get("ablation_name"), "merge")
    if cfg.get("merge") is None:
        raise ValueError("choose a method: +merge=average|slerp|ties|dare (or +ablation=<name>)")
    missing = [k for k in ("base", "models") if OmegaConf.is_missing(cfg.merge, k)]
    if missing:  # named here: resolving a '???' would blame a parent run called '???'
        raise ValueError(f"`merge.{missing[0]}` is not set: {cfg.merge.method} needs "
                         + ("the base model its task vectors are relative to "
                            "(merge.base=<run name | path | hub id>)" if missing[0] == "base"
                            else "the models to merge (merge.models=[<run>, <run>])"))
    validate_merge(cfg)
    spec = OmegaConf.to_container(cfg.merge, resolve=True)
    # a single name or weight is a one-element list (list("cand_1") would be its letters)
    models = [spec["models"]] if isinstance(spec["models"], str) else list(spec["models"])
    if spec.get("weights") is not None and not isinstance(spec["weights"], list):
        spec["weights"] = [spec["weights"]]
    base = spec.get("base")
    validate(spec["method"], len(models), spec.get("weights"), spec.get("normalize", True),
             base is not None)  # config errors before any input is resolved
    plan = plan_run(cfg.run.dir, cfg, overwrite=bool(cfg.run.overwrite))
    if plan == "finished":  # same inputs and settings: nothing to redo (a merge is deterministic)
        print(f"{cfg.run.dir} is merged already with these settings (run.overwrite=true redoes it)")
        return Path(cfg.run.dir)

    def local(ref):
        return local_checkpoint(resolve_model(str(ref), cfg.paths.runs, cfg.scale.name))

    dirs = [local(m) for m in models]
    base_dir = local(base) if base is not None else None
    params = {k: v for k, v in spec.items() if k not in NOT_PARAMS}
    with atomic_dir(cfg.run.dir, overwrite=plan != "new") as tmp:
        write_json(tmp / RUN_FILE, run_record(cfg))
        (tmp / "model").mkdir()
        info = merge_checkpoints(dirs, tmp / "model", method=spec["method"],
                                 weights=spec.get("weights"), params=params, base_dir=base_dir,
                                 max_shard_bytes=cfg.output.shard_size,
                                 progress=bool(cfg.output.progress))
        write_lineage(tmp, method=spec["method"], parents=[str(m) for m in models],
                      params={**info, "base": base, "model_dirs": [str(d) for d in dirs]})
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    print(f"merged {models} ({spec['method']}) into {cfg.run.dir}/model")
    return Path(cfg.run.dir)


@hydra.main(config_path=str(CONF_DIR), config_name="merge", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_command(main, "merge")
