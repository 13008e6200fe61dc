"""python -m solar.train +ablation=<name> [scale=tiny]: compose -> validate -> data + objective ->
fit -> Hugging Face checkpoint in runs/<scale>/<name>/model (DESIGN.md).

One stage (solar/stage.py) for CPT, SFT and DPO; sDPO runs one stage per step (solar/sdpo.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from solar.cli import run_command
from solar.config import ConfigError, validate_train
from solar.data.sources import EmptySourceError, SchemaError
from solar.modeling import load_tokenizer
from solar.objectives.reference import weight_hashes
from solar.runs import MissingParentError, remove_stale, resolve_model
from solar.sdpo import run_sdpo
from solar.stage import build_data, build_module, fit_stage, stage_logger

EXPECTED = (ConfigError, SchemaError, EmptySourceError, MissingParentError, FileNotFoundError,
            FileExistsError)


def train(cfg: DictConfig) -> Path:
    validate_train(cfg)
    if cfg.get("eval"):  # eval=h6: its options and files fail now, not after the training
        from solar.eval.options import check_eval
        check_eval(cfg.eval, cfg.scale.world, cfg.paths.cache)
    run_dir, model_out = Path(cfg.run.dir), Path(cfg.run.dir) / "model"
    remove_stale(model_out)  # a killed export's temp dirs (a whole model each), at the start
    if model_out.exists() and not cfg.run.overwrite:
        raise FileExistsError(f"{model_out} is finished already; set run.overwrite=true to redo it")
    pretrained = cfg.model.pretrained and resolve_model(cfg.model.pretrained, cfg.paths.runs,
                                                        cfg.scale.name)
    tokenizer = load_tokenizer(pretrained, cfg.paths.cache, cfg.model.trust_remote_code)
    L.seed_everything(cfg.seed, workers=True)
    parent = cfg.model.pretrained or "init:" + cfg.model.name
    if cfg.objective.name == "sdpo":
        model_out = run_sdpo(cfg, run_dir, pretrained, tokenizer)
    else:
        data = build_data(cfg, OmegaConf.to_container(cfg.data.sources, resolve=True), tokenizer)
        data.setup()  # before anything is written: data errors leave no run dir behind
        print(f"data: {data.report['train']} (cache {data.cache_path})")
        module = build_module(cfg, pretrained, tokenizer)
        extra = {"reference": parent, "reference_weights": weight_hashes(pretrained)} if \
            cfg.objective.name == "dpo" and pretrained else None
        with stage_logger(cfg, run_dir, cfg.run.name) as logger:
            model_out = fit_stage(cfg, data, module, run_dir, logger, tokenizer, [parent], extra)
    if cfg.get("eval"):
        from solar.evaluate import evaluate_h6  # the eval extra is only needed here
        with stage_logger(cfg, run_dir, f"{cfg.run.name}-eval") as logger:
            evaluate_h6(str(model_out), cfg.eval, run_dir / "eval", cfg.scale.world,
                        cfg.paths.cache, logger_run=logger.experiment
                        if cfg.logger.name == "wandb" else None)
    return model_out


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_command(main, "train")
