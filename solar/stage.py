"""One training stage: data module + objective + Lightning fit -> Hugging Face checkpoint.

solar.train runs one stage per run (CPT, SFT, DPO); sDPO (solar/sdpo.py) runs one per step, each in
its own directory. A stage directory holds config.yaml, git_sha, checkpoints/ (Lightning, resumable),
metrics, model/ (written atomically once the stage is complete) and lineage.json.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from solar.csv_metrics import MetricsResume
from solar.data.datamodule import SolarDataModule
from solar.data.pairs import PreferenceDataModule
from solar.distributed import export_state_dict, make_strategy
from solar.loggers import make_logger
from solar.modeling import PACKED_SDPA, attention_implementation
from solar.objectives.cpt import CPTModule
from solar.objectives.dpo import DPOModule
from solar.objectives.reference import fingerprint
from solar.objectives.sft import SFTModule
from solar.runs import (atomic_dir, discard_replaced, git_sha, resume_record,
                        update_resume_record, write_json, write_lineage)

# lightning/__init__ gives its logger a console handler of its own and lets it propagate to the
# root logger too, which Hydra's job logging prints: every Lightning info line showed twice.
logging.getLogger("lightning").propagate = False

OBJECTIVES = {"sft": SFTModule, "cpt": CPTModule, "dpo": DPOModule, "sdpo": DPOModule}


def build_data(cfg: DictConfig, sources: dict, tokenizer) -> SolarDataModule:
    d = cfg.data
    kwargs = dict(world=cfg.scale.world, cache_dir=cfg.paths.cache, max_length=d.max_length,
                  micro_batch_size=d.micro_batch_size, grad_accum=d.grad_accum,
                  val_fraction=d.val_fraction, seed=d.seed, group_by_length=d.group_by_length)
    if cfg.objective.name in ("dpo", "sdpo"):
        return PreferenceDataModule(sources, tokenizer, **kwargs)
    attn = attention_implementation(cfg.objective.attn_implementation, packed=True)
    return SolarDataModule(sources, tokenizer, objective=cfg.objective.name, packing=d.packing,
                           padding_free=attn in ("flash_attention_2", PACKED_SDPA), **kwargs)


def build_module(cfg: DictConfig, pretrained: str | None, tokenizer, reference: str | None = None):
    """The objective's LightningModule, its policy initialised from ``pretrained``.

    DPO's reference defaults to the initial policy (``reference`` None): the SFT model, or for an
    sDPO step the previous step's result.
    """
    obj = cfg.objective
    kwargs = dict(
        pretrained=pretrained, architecture=OmegaConf.to_container(cfg.model.architecture) if
        cfg.model.architecture else None, vocab_size=len(tokenizer), init_seed=cfg.model.init_seed,
        attn_implementation=obj.attn_implementation, trust_remote_code=cfg.model.trust_remote_code,
        lr=obj.lr, weight_decay=obj.weight_decay, betas=tuple(obj.betas),
        warmup_steps=obj.warmup_steps, min_lr_ratio=obj.min_lr_ratio,
        max_steps=cfg.trainer.max_steps, gradient_clip_val=cfg.trainer.gradient_clip_val,
        activation_checkpointing=obj.activation_checkpointing)
    if obj.name in ("dpo", "sdpo"):
        ref = reference or pretrained
        kwargs.update(beta=obj.beta, loss_type=obj.loss_type, label_smoothing=obj.label_smoothing,
                      reference=obj.reference, reference_model=ref,
                      reference_fingerprint=fingerprint(ref, kwargs["architecture"],
                                                        cfg.model.init_seed),
                      reference_is_policy=ref == pretrained, ref_cache_dir=cfg.paths.cache,
                      ref_batch_size=obj.ref_batch_size)
    return OBJECTIVES[obj.name](**kwargs)


@contextlib.contextmanager
def stage_logger(cfg: DictConfig, stage_dir: Path, name: str):
    """The stage's experiment logger (W&B run in the ablation's group, or CSV), always closed.

    The W&B run id of ``name`` is kept in the stage's resume.json, so a resumed or requeued job
    continues the same W&B run instead of starting another."""
    run_id = None
    if cfg.logger.name == "wandb":
        ids = resume_record(stage_dir)["wandb_ids"]
        run_id = ids.get(name) or uuid.uuid4().hex[:8]  # W&B's own ids are 8 characters too
        if name not in ids:
            stage_dir.mkdir(parents=True, exist_ok=True)
            update_resume_record(stage_dir, wandb_ids={**ids, name: run_id})
    logger = make_logger(cfg.logger, run_dir=stage_dir, name=name, group=cfg.run.family,
                         job_type=cfg.run.stage, config=OmegaConf.to_container(cfg, resolve=True),
                         run_id=run_id)
    try:
        yield logger
    finally:
        if cfg.logger.name == "wandb":
            import wandb
            wandb.finish()


def fit_stage(cfg: DictConfig, data: SolarDataModule, module, stage_dir: Path, logger, tokenizer,
              parents: list[str], extra_lineage: dict | None = None) -> Path:
    """Fit (resuming from stage_dir/checkpoints/last.ckpt if present) and export model/."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (stage_dir / "git_sha").write_text(git_sha() + "\n")
    train_report = data.report["train"]
    logger.log_hyperparams({"data/sources": data.report["sources"], **(
        {"data/packing_efficiency": train_report["packing_efficiency"]}
        if "packing_efficiency" in train_report else {})})
    tr = cfg.trainer
    ckpt = ModelCheckpoint(dirpath=stage_dir / "checkpoints", every_n_train_steps=
                           tr.checkpoint_every_n_steps, save_top_k=-1, save_last=True,
                           filename="step{step}", auto_insert_metric_name=False)

    def on_start(step: int) -> None:  # after the checkpoint is restored (step 0: none was)
        if trainer.is_global_zero:  # every start after the first is a restart (kill, requeue)
            record = resume_record(stage_dir)
            update_resume_record(stage_dir, starts=record["starts"] + 1,
                                 restarts=record["starts"],
                                 resumed_at_steps=record["resumed_at_steps"] + [step] * (
                                     record["starts"] > 0))

    resume_cb = MetricsResume(on_start, lambda: trainer.is_global_zero and
                              discard_replaced(cfg.run.dir))
    has_val = len(data.val_rows) > 0
    last = stage_dir / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings():
        # Lightning warnings that do not apply here and alarm every run's log: the objectives
        # step the optimizer by hand (one training_step = one optimizer step), so the state after
        # the step is the one a checkpoint should hold; the train loader resumes mid-epoch
        # from the step count the DataModule's state_dict carries (Lightning only looks for a
        # state_dict on the DataLoader; tests/test_crash_resume.py resumes bit for bit); a run
        # outside srun on a machine with Slurm is meant (Slurm jobs are srun'd by submitit,
        # solar/pipeline/slurm.py); and a deprecation inside Lightning's own pytree helper.
        for message in ("Using ModelCheckpoint with manual optimization",
                        "You're resuming from a checkpoint that ended before the epoch ended",
                        "The `srun` command is available on your system but is not used",
                        r"`isinstance\(treespec, LeafSpec\)` is deprecated"):
            warnings.filterwarnings("ignore", message=message)
        trainer = L.Trainer(
            max_steps=tr.max_steps, max_epochs=tr.max_epochs, accelerator=tr.accelerator,
            devices=tr.devices, num_nodes=tr.num_nodes, precision=tr.precision,
            strategy=make_strategy(tr.strategy, module.model),
            # the loaders shard by rank themselves (data/datamodule.py)
            use_distributed_sampler=False,
            log_every_n_steps=tr.log_every_n_steps, logger=logger, callbacks=[ckpt, resume_cb],
            enable_progress_bar=tr.enable_progress_bar,
            val_check_interval=tr.checkpoint_every_n_steps if has_val else None,
            limit_val_batches=None if has_val else 0, check_val_every_n_epoch=None,
            num_sanity_val_steps=0, enable_model_summary=False,
            # Under Slurm, submitit owns requeueing (USR2, solar/pipeline/slurm.py); Lightning's own
            # SLURM requeue (USR1) stays off so that a job is never requeued by both.
            plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None)
        trainer.fit(module, datamodule=data, ckpt_path=str(last)
                    if cfg.run.resume and last.exists() else None)
    if trainer.interrupted:  # Ctrl-C / SIGTERM: keep the checkpoints, write no model
        raise KeyboardInterrupt(f"run interrupted; rerun the same command to resume {stage_dir}")
    model_out = stage_dir / "model"
    state = export_state_dict(trainer)  # every rank: FSDP gathers the shards onto rank 0
    if trainer.is_global_zero:
        with atomic_dir(model_out, overwrite=cfg.run.overwrite) as tmp:
            module.model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            # Provenance before the rename: model/ (what marks the stage finished) never exists
            # without its lineage.json; the stage dir keeps a copy, where the run layout has it.
            lineage = write_lineage(tmp, method=cfg.objective.name, parents=parents,
                                    params=OmegaConf.to_container(cfg.objective, resolve=True),
                                    data=data.report, **(extra_lineage or {}),
                                    **{k: resume_record(stage_dir)[k]
                                       for k in ("restarts", "resumed_at_steps")})
            write_json(stage_dir / "lineage.json", lineage)
        print(f"model: {model_out}")
    # the other ranks wait for the export: the next sDPO step loads it as policy and reference
    trainer.strategy.barrier("export")
    return model_out
