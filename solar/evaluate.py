"""H6 evaluation: python -m solar.evaluate model=<run name | path | hub id> [scale=tiny] [eval.*=...]

compose (conf/evaluate.yaml) -> resolve the model -> check the benchmark files -> lm-eval with the
Open LLM Leaderboard v1 settings -> runs/<scale>/<name>/eval/h6.json (other settings:
eval/h6-<settings>.json, see solar/eval/results.py) + W&B + a printed table.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from solar.cli import exit_user_error, run_command
from solar.runs import CONF_DIR, MissingParentError, resolve_model, run_dir

# expected bad input (solar.eval.tasks.BenchmarkDataError is a ValueError): one line, exit 2
EXPECTED = (FileNotFoundError, KeyError, MissingParentError, ValueError)


def evaluate_h6(*args, **kwargs) -> dict:
    """solar.train's API (``eval=h6``): see solar.eval.h6.evaluate_h6. Imported on use, so a bad
    command line fails before lm-eval and torch are loaded."""
    from solar.eval.h6 import evaluate_h6 as run
    return run(*args, **kwargs)


def model_ref_argv(argv: list[str]) -> list[str]:
    """``model=<ref>`` -> ``model.pretrained=<ref>`` unless <ref> is a conf/model preset.

    ``model`` is also a config group (scale=tiny overrides it), so Hydra would otherwise read a
    run name such as ``model=sft_v3`` as a missing preset file.
    """
    presets = {p.stem for p in (CONF_DIR / "model").glob("*.yaml")}
    return [f"model.pretrained={a[6:]}" if a.startswith("model=") and a[6:] not in presets else a
            for a in argv]


def eval_dir(cfg: DictConfig, model_dir: str) -> tuple[str, Path]:
    """(run name, its eval/ folder): a run's own folder, else runs/<scale>/<folder or hub id>/."""
    path = Path(model_dir)
    if path.is_dir() and path.name == "model":
        return cfg.run.name or path.parent.name, path.parent / "eval"
    name = cfg.run.name or re.sub(r"[^\w.-]+", "__", str(cfg.model.pretrained))
    return name, run_dir(cfg.paths.runs, cfg.scale.name, name) / "eval"


@hydra.main(config_path=str(CONF_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:  # every option and file check before the model loads (or anything is written)
        from solar.eval.h6 import check_data
        from solar.eval.options import eval_options

        opts = eval_options(cfg.eval)
        if not cfg.model.get("pretrained"):
            raise ValueError("set model=<run name | path | hub id> (the model to evaluate)")
        model_dir = resolve_model(str(cfg.model.pretrained), cfg.paths.runs, cfg.scale.name)
        check_data(opts, cfg.scale.world, cfg.paths.cache)
    except EXPECTED as err:
        exit_user_error(err)
    import wandb

    from solar.loggers import wandb_mode

    name, out_dir = eval_dir(cfg, model_dir)
    run = None
    if cfg.logger.name == "wandb" and wandb_mode(cfg.logger.get("mode", "auto")) != "disabled":
        run = wandb.init(project=cfg.logger.project, entity=cfg.logger.get("entity"), name=name,
                         group=cfg.run.family or name, job_type="eval", dir=str(out_dir.parent),
                         mode=wandb_mode(cfg.logger.get("mode", "auto")),
                         config=OmegaConf.to_container(cfg, resolve=True))
    try:
        evaluate_h6(model_dir, opts, out_dir, cfg.scale.world, cfg.paths.cache, logger_run=run)
    finally:
        if run is not None:
            run.finish()


if __name__ == "__main__":
    sys.argv = model_ref_argv(sys.argv)
    run_command(main, "evaluate")
