"""Validation of a composed config: every mistake is collected and reported with its key."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from solar.data.schemas import PREFERENCE_SCHEMAS, SCHEMAS

OBJECTIVE_NAMES = ("cpt", "sft", "dpo", "sdpo")


class ConfigError(ValueError):
    def __init__(self, errors: list[str]):
        self.errors = errors
        # one mistake: one line (`error: <key> ...`); several: one line each, under a count
        super().__init__(errors[0] if len(errors) == 1 else f"{len(errors)} config errors:\n" +
                         "\n".join(f"  - {e}" for e in errors))


def _positive(cfg: DictConfig, key: str, errors: list[str], allow_zero: bool = False,
              integer: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    kinds = int if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        what = "an integer " if integer else ""
        errors.append(f"`{key}` must be {what}{'>= 0' if allow_zero else '> 0'} (got {value!r})")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Lightning's accepted values (lightning/fabric/connector.py), checked here so that a typo fails
# before the run directory is made rather than when the Trainer is built.
PRECISIONS = ("64", "64-true", "32", "32-true", "16", "16-mixed", "16-true", "bf16",
              "bf16-mixed", "bf16-true", "transformer-engine", "transformer-engine-float16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "xla")


def _validate_trainer(cfg: DictConfig, errors: list[str]) -> None:
    tr = cfg.trainer
    # every count is an integer > 0: checkpoint_every_n_steps=0 once divided by zero mid-setup
    for key in ("max_steps", "max_epochs", "num_nodes", "log_every_n_steps",
                "checkpoint_every_n_steps"):
        _positive(cfg, f"trainer.{key}", errors, integer=True)
    _positive(cfg, "trainer.gradient_clip_val", errors, allow_zero=True)
    if str(tr.precision) not in PRECISIONS:
        errors.append(f"`trainer.precision` must be one of {PRECISIONS} (got {tr.precision!r})")
    if tr.accelerator not in ACCELERATORS:
        errors.append(f"`trainer.accelerator` must be one of {ACCELERATORS} (got "
                      f"{tr.accelerator!r})")
    devices = tr.devices
    if not (devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and
                                  (devices > 0 or devices == -1)) or OmegaConf.is_list(devices)):
        errors.append(f"`trainer.devices` must be auto, -1, a count > 0 or a list of device "
                      f"ids (got {devices!r})")


def validate_train(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem of a training config."""
    errors: list[str] = []
    if cfg.get("entry", "train") != "train":
        errors.append(f"`entry` is '{cfg.entry}': run this ablation with python -m solar.{cfg.entry}")
    if cfg.scale.name not in ("paper", "tiny"):
        errors.append(f"`scale.name` must be paper or tiny (got {cfg.scale.name!r})")
    if cfg.model.get("pretrained") is None and not cfg.model.get("architecture"):
        errors.append("`model.pretrained` (run name, path, hub id) or `model.architecture` is needed")
    for key in ("data.max_length", "data.micro_batch_size", "data.grad_accum"):
        _positive(cfg, key, errors, integer=True)
    _positive(cfg, "objective.lr", errors)
    _positive(cfg, "objective.warmup_steps", errors, allow_zero=True, integer=True)
    _positive(cfg, "seed", errors, allow_zero=True, integer=True)
    _validate_trainer(cfg, errors)
    if not _is_number(cfg.data.val_fraction) or not 0 <= cfg.data.val_fraction < 1:
        errors.append(f"`data.val_fraction` must be in [0, 1) (got {cfg.data.val_fraction})")
    ratio = cfg.objective.get("min_lr_ratio", 0)
    if not _is_number(ratio) or not 0 <= ratio <= 1:
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
            _positive(cfg, f"{key}.max_samples", errors, integer=True)
    if objective in ("dpo", "sdpo"):
        _validate_preference(cfg, errors)
    _validate_devices(cfg, errors)
    if cfg.logger.name not in ("wandb", "csv"):
        errors.append(f"`logger.name` must be wandb or csv (got {cfg.logger.name!r})")
    elif cfg.logger.name == "wandb" and cfg.logger.mode not in ("auto", "online", "offline",
                                                                  "disabled"):
        errors.append("`logger.mode` must be auto, online, offline or disabled")
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
        if not OmegaConf.is_list(step.data):  # a string would be read letter by letter
            errors.append(f"`objective.steps[{k}].data` must be a list of source names (got "
                          f"{step.data!r}; write [{step.data}])")
            continue
        for src in step.data:
            if src not in sources:
                errors.append(f"`objective.steps[{k}].data`: source '{src}' is not selected "
                              f"under `data` (selected: {sorted(sources)})")
            used.append(src)
    if len(used) != len(set(used)):
        errors.append("`objective.steps`: a source appears in more than one step")


# -- weight surgery: merge and upscale ------------------------------------------------------------

def _fraction_setting(value, key: str, low_open: bool, high_open: bool, errors: list[str]) -> None:
    """A per-tensor setting (number, per-layer gradient list, or list of {filter, value}) whose
    numbers must all lie in the interval; one error naming the key and the bad value."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")

    def ok(x) -> bool:
        return _is_number(x) and (x > 0 if low_open else x >= 0) and (x < 1 if high_open else
                                                                          x <= 1)
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    numbers = []
    for item in items:
        if isinstance(item, dict):
            inner = item.get("value")
            numbers += list(inner) if isinstance(inner, (list, tuple)) else [inner]
        else:
            numbers.append(item)
    bad = [x for x in numbers if not ok(x)]
    if not items or bad:
        errors.append(f"`{key}` must be in {lo}0, 1{hi}, or a list of such (got {value!r})")


def _shard_size(value, key: str, errors: list[str]) -> None:
    from solar.weights.writer import parse_size

    try:
        ok = parse_size(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, bool):
        errors.append(f"`{key}` must be a size > 0 such as 5GB, 500MB or a byte count "
                      f"(got {value!r})")


def validate_merge(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem of a merge config (the method's own rules, e.g.
    slerp needs two models, are checked by solar.weights.merge.validate)."""
    errors: list[str] = []
    spec = OmegaConf.to_container(cfg.merge, resolve=True, throw_on_missing=False)
    models = spec.get("models")
    if models == "???" or models in (None, "", []):
        errors.append("`merge.models` is not set: merge.models=[<run | path | hub id>, ...]")
    elif not isinstance(models, (str, list)) or not all(
            isinstance(m, str) and m for m in ([models] if isinstance(models, str) else models)):
        errors.append(f"`merge.models` must be a list of run names, paths or hub ids (got "
                      f"{models!r})")
    if spec.get("base") == "???":
        errors.append(f"`merge.base` is not set: {spec.get('method')} merges task vectors "
                      "relative to it (merge.base=<run | path | hub id>)")
    weights = spec.get("weights")
    if weights is not None and not (
            _is_number(weights) or (isinstance(weights, list) and weights and
                                    all(_is_number(w) for w in weights))):
        errors.append(f"`merge.weights` must be null or a list of numbers (got {weights!r})")
    elif weights is not None and any(w < 0 for w in (weights if isinstance(weights, list)
                                                      else [weights])):
        errors.append(f"`merge.weights` must be >= 0 (got {weights!r})")
    if "t" in spec:
        _fraction_setting(spec["t"], "merge.t", False, False, errors)
    if "density" in spec:
        _fraction_setting(spec["density"], "merge.density", True, False, errors)
    if "drop_rate" in spec:  # 1 would drop everything and rescale by 1/(1 - 1)
        _fraction_setting(spec["drop_rate"], "merge.drop_rate", False, True, errors)
    if "seed" in spec and not (isinstance(spec["seed"], int) and not isinstance(spec["seed"], bool)):
        errors.append(f"`merge.seed` must be an integer (got {spec['seed']!r})")
    for flag in ("normalize", "rescale", "consensus"):
        if flag in spec and not isinstance(spec[flag], bool):
            errors.append(f"`merge.{flag}` must be true or false (got {spec[flag]!r})")
    _shard_size(cfg.output.shard_size, "output.shard_size", errors)
    if errors:
        raise ConfigError(errors)


def validate_upscale(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem of a DUS config (m against the model's depth is
    checked once the checkpoint is read: solar.weights.layers.resolve_m)."""
    errors: list[str] = []
    up = cfg.upscale
    if up.get("m") is None and up.get("layers") is None:
        errors.append("set `upscale.m` (layers dropped per copy) or `upscale.layers` (target "
                      "depth s = 2(n - m))")
    if up.get("m") is not None:
        _positive(cfg, "upscale.m", errors, allow_zero=True, integer=True)
    if up.get("layers") is not None:
        _positive(cfg, "upscale.layers", errors, integer=True)
    _shard_size(up.shard_size, "upscale.shard_size", errors)
    if errors:
        raise ConfigError(errors)
