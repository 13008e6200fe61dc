"""python -m solar.train +ablation=<name> [scale=tiny]: compose -> validate -> data + objective ->
fit -> Hugging Face checkpoint in runs/<scale>/<name>/model (DESIGN.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from solar.config import ConfigError, validate_train
from solar.data.datamodule import SolarDataModule
from solar.data.sources import EmptySourceError, SchemaError
from solar.loggers import make_logger
from solar.modeling import load_tokenizer
from solar.objectives.cpt import CPTModule
from solar.objectives.sft import SFTModule
from solar.runs import (MissingParentError, ablation_in_argv, atomic_dir, git_sha,
                        refuse_other_entry, resolve_model, write_lineage)

OBJECTIVES = {"sft": SFTModule, "cpt": CPTModule}
EXPECTED = (ConfigError, SchemaError, EmptySourceError, MissingParentError, FileNotFoundError,
            FileExistsError)


def train(cfg: DictConfig) -> Path:
    validate_train(cfg)
    run_dir, model_out = Path(cfg.run.dir), Path(cfg.run.dir) / "model"
    if model_out.exists() and not cfg.run.overwrite:
        raise FileExistsError(f"{model_out} is finished already; set run.overwrite=true to redo it")
    pretrained = cfg.model.pretrained and resolve_model(cfg.model.pretrained, cfg.paths.runs,
                                                        cfg.scale.name)
    tokenizer = load_tokenizer(pretrained, cfg.paths.cache, cfg.model.trust_remote_code)
    data = SolarDataModule(
        OmegaConf.to_container(cfg.data.sources, resolve=True), tokenizer, world=cfg.scale.world,
        cache_dir=cfg.paths.cache, objective=cfg.objective.name, max_length=cfg.data.max_length,
        packing=cfg.data.packing, micro_batch_size=cfg.data.micro_batch_size,
        grad_accum=cfg.data.grad_accum, val_fraction=cfg.data.val_fraction, seed=cfg.data.seed)
    data.setup()  # before anything is written: data errors leave no run dir behind
    print(f"data: {data.report['train']} (cache {data.cache_path})")
    L.seed_everything(cfg.seed, workers=True)
    obj = cfg.objective
    module = OBJECTIVES[obj.name](
        pretrained=pretrained, architecture=OmegaConf.to_container(cfg.model.architecture) if
        cfg.model.architecture else None, vocab_size=len(tokenizer), init_seed=cfg.model.init_seed,
        attn_implementation=obj.attn_implementation, trust_remote_code=cfg.model.trust_remote_code,
        lr=obj.lr, weight_decay=obj.weight_decay, betas=tuple(obj.betas),
        warmup_steps=obj.warmup_steps, min_lr_ratio=obj.min_lr_ratio,
        max_steps=cfg.trainer.max_steps, gradient_clip_val=cfg.trainer.gradient_clip_val,
        activation_checkpointing=obj.activation_checkpointing)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run_dir / "git_sha").write_text(git_sha() + "\n")
    logger = make_logger(cfg.logger, run_dir=run_dir, name=cfg.run.name, group=cfg.run.family,
                         job_type=cfg.run.stage, config=OmegaConf.to_container(cfg, resolve=True))
    try:
        logger.log_hyperparams({"data/packing_efficiency": data.report["train"][
            "packing_efficiency"], "data/sources": data.report["sources"]})
        tr = cfg.trainer
        ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", every_n_train_steps=
                               tr.checkpoint_every_n_steps, save_top_k=-1, save_last=True,
                               filename="step{step}", auto_insert_metric_name=False)
        trainer = L.Trainer(
            max_steps=tr.max_steps, max_epochs=tr.max_epochs, accelerator=tr.accelerator,
            devices=tr.devices, num_nodes=tr.num_nodes, strategy=tr.strategy,
            precision=tr.precision, log_every_n_steps=tr.log_every_n_steps, logger=logger,
            callbacks=[ckpt], enable_progress_bar=tr.enable_progress_bar,
            val_check_interval=tr.checkpoint_every_n_steps if len(data.val_rows) else None,
            limit_val_batches=None if len(data.val_rows) else 0, check_val_every_n_epoch=None,
            num_sanity_val_steps=0, enable_model_summary=False)
        last = run_dir / "checkpoints" / "last.ckpt"
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if cfg.run.resume and
                    last.exists() else None)
        if trainer.interrupted:  # Ctrl-C / SIGTERM: keep the checkpoints, write no model
            raise KeyboardInterrupt(f"run interrupted; rerun the same command to resume {run_dir}")
        if trainer.is_global_zero:
            with atomic_dir(model_out, overwrite=cfg.run.overwrite) as tmp:
                module.model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
            write_lineage(run_dir, method=obj.name, parents=[cfg.model.pretrained or "init:" +
                          cfg.model.name], params=OmegaConf.to_container(obj, resolve=True),
                          data=data.report)
            print(f"model: {model_out}")
        if cfg.get("eval"):
            from solar.evaluate import evaluate_h6  # the eval extra is only needed here
            evaluate_h6(str(model_out), cfg.eval, run_dir / "eval", cfg.scale.world,
                        cfg.paths.cache, logger_run=getattr(logger, "experiment", None)
                        if cfg.logger.name == "wandb" else None)
    finally:
        if hasattr(logger, "experiment") and cfg.logger.name == "wandb":
            import wandb
            wandb.finish()
    return model_out


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    try:  # before composing: a merge ablation may override groups train.yaml lacks
        refuse_other_entry(ablation_in_argv(sys.argv[1:]), "train")
    except ValueError as err:
        sys.exit(f"error: {err}")
    main()
