"""Validation of a composed config: every mistake is collected and reported with its key."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from solar.data.sources import SCHEMAS


class ConfigError(ValueError):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid config:\n" + "\n".join(f"  - {e}" for e in errors))


def _positive(cfg: DictConfig, key: str, errors: list[str], allow_zero: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        errors.append(f"`{key}` must be {'>= 0' if allow_zero else '> 0'} (got {value!r})")


def validate_train(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem of a training config."""
    errors: list[str] = []
    if cfg.get("entry", "train") != "train":
        errors.append(f"`entry` is '{cfg.entry}': run this ablation with python -m solar.{cfg.entry}")
    if cfg.scale.name not in ("paper", "tiny"):
        errors.append(f"`scale.name` must be paper or tiny (got {cfg.scale.name!r})")
    if cfg.model.get("pretrained") is None and not cfg.model.get("architecture"):
        errors.append("`model.pretrained` (run name, path, hub id) or `model.architecture` is needed")
    for key in ("data.max_length", "data.micro_batch_size", "data.grad_accum", "trainer.max_steps",
                "objective.lr"):
        _positive(cfg, key, errors)
    _positive(cfg, "objective.warmup_steps", errors, allow_zero=True)
    if not 0 <= cfg.data.val_fraction < 1:
        errors.append(f"`data.val_fraction` must be in [0, 1) (got {cfg.data.val_fraction})")
    if not 0 <= cfg.objective.get("min_lr_ratio", 0) <= 1:
        errors.append("`objective.min_lr_ratio` must be in [0, 1]")
    sources = cfg.data.get("sources") or {}
    if not sources:
        errors.append("`data.sources` is empty: select sources, e.g. data=[alpaca_gpt4]")
    text_only = cfg.objective.name == "cpt"
    for name, spec in sources.items():
        key = f"data.sources.{name}"
        if spec.get("schema") not in SCHEMAS:
            errors.append(f"`{key}.schema` must be one of {sorted(SCHEMAS)} (got {spec.get('schema')!r})")
        elif text_only != (spec.schema == "text") and cfg.objective.name in ("cpt", "sft"):
            errors.append(f"`{key}`: objective '{cfg.objective.name}' cannot train on schema "
                          f"'{spec.schema}' ({'text' if text_only else 'instruction'} data needed)")
        if not spec.get("hub_id") and not spec.get("data_files"):
            errors.append(f"`{key}` needs `hub_id` or `data_files`")
        if spec.get("max_samples") is not None:
            _positive(cfg, f"{key}.max_samples", errors)
    if cfg.logger.name not in ("wandb", "csv"):
        errors.append(f"`logger.name` must be wandb or csv (got {cfg.logger.name!r})")
    elif cfg.logger.name == "wandb" and cfg.logger.mode not in ("auto", "online", "offline",
                                                                  "disabled"):
        errors.append(f"`logger.mode` must be auto, online, offline or disabled")
    if errors:
        raise ConfigError(errors)
