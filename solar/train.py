"""python -m solar.train +ablation=<name> [scale=tiny]: compose -> validate -> data + objective ->
fit -> Hugging Face checkpoint in runs/<scale>/<name>/model (DESIGN.md).

One stage (solar/stage.py) for CPT, SFT and DPO; sDPO runs one stage per step (solar/sdpo.py).
Everything that can fail on bad input (config, run directory, parent, data) is checked before the
run directory is created, and torch / Lightning / datasets are imported only after the config
validates, so a mistake on the command line costs one line and a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from solar.cli import run_command
from solar.config import ConfigError, validate_train
from solar.data.schemas import EmptySourceError, SchemaError
from solar.runs import (MissingParentError, RunDirError, plan_run, remove_stale, resolve_model,
                        start_run, undo_start)

EXPECTED = (ConfigError, SchemaError, EmptySourceError, MissingParentError, FileNotFoundError,
            FileExistsError, RunDirError)


def expected_errors() -> tuple[type[BaseException], ...]:
    """EXPECTED, plus the checkpoint and Lightning configuration errors once those modules are
    loaded (importing Lightning just to name its exception would cost seconds per bad command)."""
    extra = []
    for module, name in (("solar.weights.checkpoint", "CheckpointError"),
                         ("lightning.fabric.utilities.exceptions", "MisconfigurationException")):
        if module in sys.modules:
            extra.append(getattr(sys.modules[module], name))
    return EXPECTED + tuple(extra)


def check_enough_rows(cfg: DictConfig, data) -> None:
    """One optimizer step needs micro_batch_size x grad_accum x devices rows: fail before the
    run directory exists (Lightning would find out inside fit)."""
    devices = cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else 1
    per_step = cfg.data.micro_batch_size * cfg.data.grad_accum * max(1, devices) * \
        cfg.trainer.num_nodes
    if len(data.train_rows) < per_step:
        raise EmptySourceError(
            f"the training split has {len(data.train_rows)} rows, fewer than one optimizer step "
            f"of {per_step} (data.micro_batch_size x data.grad_accum x devices); lower "
            "`data.micro_batch_size` or `data.grad_accum`, or add data")


def train(cfg: DictConfig) -> Path:
    validate_train(cfg)
    if cfg.get("eval"):  # eval=h6: its options and files fail now, not after the training
        from solar.eval.options import check_eval
        check_eval(cfg.eval, cfg.scale.world, cfg.paths.cache)
    run_dir = Path(cfg.run.dir)
    plan = plan_run(run_dir, cfg, overwrite=bool(cfg.run.overwrite))
    remove_stale(run_dir / "model")  # a killed export's temp dirs (a whole model each)
    if plan == "finished":  # same settings, done: a requeued or repeated job has nothing to do
        print(f"{run_dir} is finished already with these settings: {run_dir / 'model'} "
              "(run.overwrite=true trains it again)")
        return run_dir / "model"
    pretrained = cfg.model.pretrained and resolve_model(cfg.model.pretrained, cfg.paths.runs,
                                                        cfg.scale.name)
    import lightning as L

    from solar.modeling import load_tokenizer
    from solar.objectives.reference import weight_hashes
    from solar.sdpo import prepare_sdpo_data, run_sdpo
    from solar.stage import build_data, build_module, fit_stage, stage_logger

    tokenizer = load_tokenizer(pretrained, cfg.paths.cache, cfg.model.trust_remote_code)
    L.seed_everything(cfg.seed, workers=True)
    parent = cfg.model.pretrained or "init:" + cfg.model.name
    if cfg.objective.name == "sdpo":
        datas = prepare_sdpo_data(cfg, tokenizer)
        for data in datas:
            check_enough_rows(cfg, data)
    else:
        data = build_data(cfg, OmegaConf.to_container(cfg.data.sources, resolve=True), tokenizer)
        data.setup()  # before anything is written: data errors leave no run dir behind
        check_enough_rows(cfg, data)
        print(f"data: {data.report['train']} (cache {data.cache_path})")
        module = build_module(cfg, pretrained, tokenizer)
    created = start_run(run_dir, cfg, plan)
    try:
        if cfg.objective.name == "sdpo":
            model_out = run_sdpo(cfg, run_dir, pretrained, tokenizer, datas)
        else:
            extra = {"reference": parent, "reference_weights": weight_hashes(pretrained)} if \
                cfg.objective.name == "dpo" and pretrained else None
            with stage_logger(cfg, run_dir, cfg.run.name) as logger:
                model_out = fit_stage(cfg, data, module, run_dir, logger, tokenizer, [parent],
                                      extra)
    except expected_errors():
        undo_start(run_dir, created)  # failed before its first checkpoint: leave no trace
        raise
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
    except Exception as err:  # only the expected kinds are one line; anything else propagates
        if not isinstance(err, expected_errors()):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_command(main, "train")
