"""Validation of a composed config: every mistake is collected and reported with its key."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from solar.data.sources import PREFERENCE_SCHEMAS, SCHEMAS

OBJECTIVE_NAMES = ("cpt", "sft", "dpo", "sdpo")


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
    objective = cfg.objective.name
    if objective not in OBJECTIVE_NAMES:
        errors.append(f"`objective.name` must be one of {OBJECTIVE_NAMES} (got {objective!r})")
    needs = {"cpt": "text", "sft": "instruction", "dpo": "preference", "sdpo": "preference"}.get(
        objective)
    for name, spec in sources.items():
        key = f"data.sources.{name}"
        schema = spec.get("schema")
        if schema not in SCHEMAS:
            errors.append(f"`{key}.schema` must be one of {sorted(SCHEMAS)} (got {schema!r})")
            continue
        kind = "text" if schema == "text" else "preference" if schema in PREFERENCE_SCHEMAS \
            else "instruction"
        if needs and kind != needs:
            errors.append(f"`{key}`: objective '{objective}' cannot train on schema '{schema}' "
                          f"({needs} data needed)")
        parts = [(f"{key}.{p}", spec.get(p) or {}) for p in ("questions", "solutions")] \
            if schema == "synth_math_alignment" else [(key, spec)]
        for part_key, part in parts:
            if not part.get("hub_id") and not part.get("data_files"):
                errors.append(f"`{part_key}` needs `hub_id` or `data_files`")
        if spec.get("max_samples") is not None:
            _positive(cfg, f"{key}.max_samples", errors)
    if objective in ("dpo", "sdpo"):
        _validate_preference(cfg, errors)
    _validate_devices(cfg, errors)
    if cfg.logger.name not in ("wandb", "csv"):
        errors.append(f"`logger.name` must be wandb or csv (got {cfg.logger.name!r})")
    elif cfg.logger.name == "wandb" and cfg.logger.mode not in ("auto", "online", "offline",
                                                                  "disabled"):
        errors.append(f"`logger.mode` must be auto, online, offline or disabled")
    if errors:
        raise ConfigError(errors)


def _requested_devices(devices) -> int | None:
    """How many devices `trainer.devices` asks for (None: auto / -1 = all there are)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return None if devices == -1 else devices
    if isinstance(devices, str):
        if devices.strip().lstrip("-").isdigit():
            return _requested_devices(int(devices))
        return None if devices == "auto" else len([d for d in devices.split(",") if d.strip()])
    return len(devices)  # a list of device indices


def _validate_devices(cfg: DictConfig, errors: list[str]) -> None:
    """Devices, strategy and attention against what this machine has (CUDA GPUs or CPU cores)."""
    import os

    import torch

    tr = cfg.trainer
    gpu = tr.accelerator in ("gpu", "cuda") or (tr.accelerator == "auto" and
                                                 torch.cuda.is_available())
    have = torch.cuda.device_count() if gpu else (os.cpu_count() or 1)
    want = _requested_devices(tr.devices)
    if want is not None and want > have:
        errors.append(f"`trainer.devices` asks for {want} but this machine has {have} "
                      f"{'CUDA GPUs' if gpu else 'CPU cores'}")
    if tr.strategy == "fsdp" and not (gpu and have):
        errors.append("`trainer.strategy`: fsdp needs CUDA GPUs (Lightning and torch refuse FSDP "
                      "on CPU); use trainer.strategy=ddp")
    if tr.strategy == "fsdp" and cfg.objective.get("reference") == "live":
        errors.append("`objective.reference`: live keeps an unsharded copy of the model, not "
                      "possible under trainer.strategy=fsdp; use precomputed")
    if cfg.objective.get("attn_implementation") == "flash_attention_2" and not \
            torch.cuda.is_available():
        errors.append("`objective.attn_implementation`: flash_attention_2 needs CUDA (none "
                      "found); use auto (flash-attn on GPU, packed sdpa on CPU) or sdpa")


def _validate_preference(cfg: DictConfig, errors: list[str]) -> None:
    """DPO / sDPO settings: beta, loss, reference, and sDPO's steps."""
    obj = cfg.objective
    _positive(cfg, "objective.beta", errors)
    if obj.get("loss_type") not in ("sigmoid", "ipo"):
        errors.append(f"`objective.loss_type` must be sigmoid or ipo (got {obj.get('loss_type')!r})")
    if not 0 <= obj.get("label_smoothing", 0) < 0.5:
        errors.append(f"`objective.label_smoothing` must be in [0, 0.5) (got {obj.label_smoothing})")
    if obj.get("reference") not in ("precomputed", "live"):
        errors.append(f"`objective.reference` must be precomputed or live (got "
                      f"{obj.get('reference')!r})")
    if obj.name != "sdpo":
        return
    if obj.get("order") not in ("given", "easy_to_hard"):
        errors.append(f"`objective.order` must be given or easy_to_hard (got {obj.get('order')!r})")
    steps = obj.get("steps") or []
    if not steps:
        errors.append("`objective.steps` is empty: sDPO needs at least one step")
    sources, used = cfg.data.get("sources") or {}, []
    for k, step in enumerate(steps):
        if not step.get("name") or not step.get("data"):
            errors.append(f"`objective.steps[{k}]` needs a `name` and a `data` list of sources")
            continue
        for src in step.data:
            if src not in sources:
                errors.append(f"`objective.steps[{k}].data`: source '{src}' is not selected "
                              f"under `data` (selected: {sorted(sources)})")
            used.append(src)
    if len(used) != len(set(used)):
        errors.append("`objective.steps`: a source appears in more than one step")
