"""Run directories, lineage and model references shared by every entry point.

A run lives in ``runs/<scale>/<name>/`` (DESIGN.md contract). A later stage names its input by
run name (``sft_v3``), by path, or by hub id; ``resolve_model`` turns any of those into something
``from_pretrained`` accepts, or fails with the command that produces the missing parent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
WEIGHT_PATTERNS = ("*.safetensors",)


# Overrides that do not change what a run computes: they never enter a sweep member's run name.
NAME_NEUTRAL = ("scale", "paths.", "logger", "hydra", "run.", "ablation", "cluster.", "eval",
                "trainer.enable_progress_bar", "output.", "upscale.progress", "upscale.shard_size")


def sweep_name(base: str) -> str:
    """Run name of a Hydra multirun member: ``base`` plus the values of the swept keys.

    ``-m +ablation=dpo_v2 objective.beta=0.01,0.1`` gives ``dpo_v2-beta0.01`` and ``dpo_v2-beta0.1``,
    so two members never share a run directory; ``-m +ablation=sft_v1,sft_v2 trainer.max_steps=500``
    keeps ``sft_v1`` and ``sft_v2`` (the ablation is the name already; fixed overrides apply to all
    members, as they do to a single run). Outside a multirun the name is ``base``.
    """
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # composed by the compose API (tests, solar.experiment), not a Hydra job
        return base
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return base
    swept = swept_keys(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
    parts = []
    for override in hydra_cfg.overrides.task:
        key, _, value = override.lstrip("+~").partition("=")
        if not key.startswith(NAME_NEUTRAL) and (swept is None or key in swept):
            parts.append(re.sub(r"[^\w.-]+", "", f"{key.rsplit('.', 1)[-1]}{value}"))
    return "-".join([base, *parts])


def swept_keys(multirun_yaml: Path) -> set[str] | None:
    """Keys the sweep varies, from the command line Hydra saved in the sweep dir before launching
    (a job only sees its own resolved overrides). None if unreadable: then every key counts."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        task = OmegaConf.load(multirun_yaml).hydra.overrides.task
    except (OSError, AttributeError):
        return None
    overrides = OverridesParser.create().parse_overrides(list(task))
    return {o.key_or_group for o in overrides if o.is_sweep_override()}


OmegaConf.register_new_resolver("solar.sweep_name", sweep_name, replace=True)
# `cluster.setup` (a list of shell lines) as the one string hydra/launcher/slurm.yaml can hold
OmegaConf.register_new_resolver("solar.lines", lambda lines: "\n".join(lines), replace=True)


class MissingParentError(RuntimeError):
    """A stage's input model does not exist yet."""


def run_dir(runs_root: str | os.PathLike, scale: str, name: str) -> Path:
    return Path(runs_root) / scale / name


def ablation_entry(name: str) -> str | None:
    """Which entry point runs ablation ``name`` ('train', 'merge', ...), from its ``entry:`` key."""
    path = CONF_DIR / "ablation" / f"{name}.yaml"
    if not path.is_file():
        return None
    return (yaml.safe_load(path.read_text()) or {}).get("entry", "train")


def producer(name: str) -> tuple[str, list[str]] | None:
    """(entry point, overrides) of the command that creates run ``name``, or None if nothing does:
    ``dus`` is solar.upscale's default run, every other run name is an ablation's."""
    if name == "dus":
        return "upscale", []
    entry = ablation_entry(name)
    return None if entry is None else (entry, [f"+ablation={name}"])


def producer_command(name: str, scale: str) -> str:
    """The command that creates run ``name``: what a user should run when it is missing."""
    made_by = producer(name)
    if made_by is None:
        return f"python -m solar.train +ablation=<ablation> scale={scale} run.name={name}"
    entry, overrides = made_by
    return " ".join(["python -m", f"solar.{entry}", *overrides, f"scale={scale}"])


def has_weights(path: Path) -> bool:
    return any(any(path.glob(p)) for p in WEIGHT_PATTERNS)


def verified(model_dir: Path) -> str:
    """``model_dir`` once its safetensors headers fit their files: a truncated or corrupt parent
    fails here with the file's name (CheckpointError, a ValueError), not deep inside a load."""
    from solar.weights.checkpoint import Checkpoint

    Checkpoint(model_dir)  # headers only: no tensor is read
    return str(model_dir)


def resolve_model(ref: str, runs_root: str | os.PathLike, scale: str) -> str:
    """Resolve a run name, a checkpoint path or a hub id to a ``from_pretrained`` argument.

    Order: an existing path; a run name under ``runs/<scale>/``; otherwise a hub id (``org/name``).
    """
    path = Path(ref).expanduser()
    if path.exists():
        model_dir = path / "model" if (path / "model").is_dir() else path
        if not (model_dir / "config.json").is_file() or not has_weights(model_dir):
            raise FileNotFoundError(
                f"model path {model_dir} has no config.json + *.safetensors weights; "
                "point at a Hugging Face checkpoint directory (or a run directory holding model/)"
            )
        return verified(model_dir)
    if path.is_absolute() or ref.startswith(("./", "../", "~")) or ref.count("/") > 1:
        # a hub id is `org/name`: anything else is a path, and from_pretrained would answer a
        # missing one with a traceback about repo ids
        raise FileNotFoundError(f"model path {path} does not exist")
    rdir = run_dir(runs_root, scale, ref)
    if rdir.is_dir() or "/" not in ref:
        model_dir = rdir / "model"
        if model_dir.is_dir() and has_weights(model_dir):
            return verified(model_dir)
        state = "has no finished model/" if rdir.is_dir() else "does not exist"
        raise MissingParentError(
            f"parent run '{ref}' ({rdir}) {state}; produce it first with:\n"
            f"    {producer_command(ref, scale)}"
        )
    return ref  # a hub id, left to from_pretrained (and its cache / HF_HUB_OFFLINE rules)


def git_sha(cwd: str | os.PathLike | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd or CONF_DIR.parent,
            capture_output=True, text=True, check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd or CONF_DIR.parent,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# Temp / replaced dirs older than this were left by another process: a killed run gets no chance
# to remove its own (SIGKILL, OOM, a node lost), so the next run of that name does.
PROCESS_START = time.time()


def remove_stale(final: str | os.PathLike) -> list[Path]:
    """Remove the ``.tmp-<name>-*`` / ``.old-<name>-*`` dirs beside ``final`` that are older than
    this process (debris of a killed run, up to a whole model each), with a one-line notice."""
    final = Path(final)
    # exactly atomic_dir's names: `.tmp-out-b-<hex>` belongs to run `out-b`, not to `out`
    ours = re.compile(rf"\.(tmp|old)-{re.escape(final.name)}-[0-9a-f]{{8}}")
    stale = [p for kind in ("tmp", "old") for p in sorted(final.parent.glob(f".{kind}-*"))
             if ours.fullmatch(p.name) and p.is_dir() and p.stat().st_mtime < PROCESS_START]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    if stale:
        print(f"removed {len(stale)} stale dir(s) left by an interrupted run of {final}: "
              f"{', '.join(p.name for p in stale)}")
    return stale


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp dir beside ``final``; rename it into place only if the block succeeds.

    A failure leaves nothing behind, so a half-written output can never be mistaken for a result;
    a killed run's leftovers are removed by the next one (``remove_stale``).
    """
    final = Path(final)
    remove_stale(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists (pass overwrite=true to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON through a temp file + rename (readers never see a partial file). The temp file
    is the process's own: ranks that write the same file side by side do not rename each other's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def write_lineage(model_dir: str | os.PathLike, *, method: str, parents: list[str],
                  params: dict | None = None, data: dict | None = None, **extra) -> dict:
    """``lineage.json``: where a checkpoint came from (parents, data recipe, method, parameters,
    and any ``extra`` facts of the method, e.g. the reference of a DPO step); returns it."""
    lineage = {"method": method, "parents": parents, "params": params or {}, "data": data or {},
               "git_sha": git_sha(), **extra}
    write_json(Path(model_dir) / "lineage.json", lineage)
    return lineage


def ablation_in_argv(argv: list[str]) -> str | None:
    """The ``+ablation=<name>`` of a command line, read before Hydra composes anything: an
    ablation of another entry point may override config groups this entry point does not have."""
    for arg in argv:
        if arg.startswith(("+ablation=", "ablation=", "++ablation=")):
            return arg.split("=", 1)[1]
    return None


def exit_if_other_entry(entry: str, argv: list[str]) -> None:
    """Before composition (the ablation may override groups this entry point lacks): an ablation
    of another entry point exits 2 with the command that runs it."""
    try:
        refuse_other_entry(ablation_in_argv(argv), entry)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def refuse_other_entry(ablation_name: str | None, entry: str) -> None:
    """An ablation run by another entry point fails here with the command that runs it."""
    kind = ablation_entry(ablation_name) if ablation_name else None
    if kind is not None and kind != entry:
        raise ValueError(f"ablation '{ablation_name}' is not run by solar.{entry}; run:\n"
                         f"    python -m solar.{kind} +ablation={ablation_name}")


# -- Run identity: the settings that determine a run's result --------------------------------------
# Keys that do not change what a run computes: where things go, how progress is shown, what is
# logged or evaluated afterwards, and the interval of checkpoints (resume gives the same numbers
# whatever it is). Everything else (data, model, objective, trainer, seed, merge, upscale) counts.
NOT_RESULT = ("run", "paths", "logger", "eval", "hydra", "cluster", "resources", "ablation_name",
              "ablation_family", "output", "upscale.progress", "upscale.shard_size",
              "trainer.enable_progress_bar", "trainer.log_every_n_steps",
              "trainer.checkpoint_every_n_steps")
# Groups an entry point composes only so that scale=tiny's overrides resolve (conf/merge.yaml)
UNUSED_BY_ENTRY = {"merge": ("model", "trainer", "data", "objective"),
                   "upscale": ("trainer", "data", "objective")}
RUN_FILE = "run.json"          # {fingerprint, settings}: written when a run directory is created
RESUME_FILE = "resume.json"    # per stage: {starts, restarts, resumed_at_steps, wandb_ids}


class RunDirError(ValueError):
    """A run directory cannot be used as asked (other settings, read-only root)."""


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def fingerprint_settings(cfg) -> dict:
    """The result-determining settings of a config (DictConfig or plain dict) as flat keys."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    flat = _flatten(cfg)
    skip = NOT_RESULT + UNUSED_BY_ENTRY.get(flat.get("entry"), ())
    return {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in skip)}


def _digest(settings: dict) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(cfg) -> str:
    """SHA-256 (16 hex) of ``fingerprint_settings(cfg)``: equal fingerprints, equal results."""
    return _digest(fingerprint_settings(cfg))


def stored_settings(run_dir: str | os.PathLike) -> dict | None:
    """The settings a run directory was made with: ``run.json``, else (runs made before it
    existed) its ``config.yaml``; None for a directory that holds no run."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).is_file():
        return json.loads((run_dir / RUN_FILE).read_text())["settings"]
    if (run_dir / "config.yaml").is_file():
        return fingerprint_settings(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    return None


def stored_fingerprint(run_dir: str | os.PathLike) -> str | None:
    """The fingerprint of the run in ``run_dir`` (None if there is none): compare it with
    ``fingerprint(cfg)`` to know whether a finished run is the one a config asks for."""
    settings = stored_settings(run_dir)
    return None if settings is None else _digest(settings)


def is_finished(run_dir: str | os.PathLike) -> bool:
    model = Path(run_dir) / "model"
    return model.is_dir() and has_weights(model)


def check_writable(path: str | os.PathLike, key: str = "paths.runs") -> None:
    """Fail with one line when ``path`` (or the directory that would hold it) is not writable.

    Probed by creating a file, not with os.access: as root, access() says yes to a chmod 555 dir
    (and writing there works), while a read-only mount refuses even root.
    """
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"`{key}`: {existing} is a file, not a directory")
    try:
        probe = existing / f".solar-write-probe-{uuid.uuid4().hex[:8]}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise RunDirError(f"`{key}`: {existing} is read-only ({err.strerror}); point "
                          f"{key}=<a writable directory>") from None


def plan_run(run_dir: str | os.PathLike, cfg, *, overwrite: bool) -> str:
    """What to do with ``run_dir`` for ``cfg``, decided before anything is loaded or written.

    'new' (nothing there), 'overwrite' (start over; the old run is moved aside by start_run),
    'resume' (same settings, unfinished), 'finished' (same settings, model/ exists). A run made
    with other settings refuses, listing the keys that differ and the two ways out.
    """
    run_dir = Path(run_dir)
    check_writable(run_dir)
    stored = stored_settings(run_dir)
    if stored is None:
        if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
            raise RunDirError(f"{run_dir} exists but holds no run (no {RUN_FILE} or config.yaml); "
                              "set run.name=<another name> or run.overwrite=true to replace it")
        return "overwrite" if run_dir.exists() else "new"
    if overwrite:
        if os.environ.get("SLURM_JOB_ID") and _run_record(run_dir).get(
                "slurm_job_id") == os.environ["SLURM_JOB_ID"]:
            # a requeued job reruns its command line: overwrite=true must not wipe its own progress
            print(f"run.overwrite=true: {run_dir} was started by this Slurm job "
                  f"({os.environ['SLURM_JOB_ID']}), resuming it")
        else:
            return "overwrite"
    current = fingerprint_settings(cfg)
    differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if differ:
        shown = "\n".join(f"    {k}: {stored.get(k, '<unset>')!r} -> {current.get(k, '<unset>')!r}"
                          for k in differ[:20])
        more = f"\n    ... and {len(differ) - 20} more" if len(differ) > 20 else ""
        raise RunDirError(
            f"{run_dir} was made with other settings ({len(differ)} key(s) differ):\n{shown}{more}\n"
            f"  keep it and start a new run: add run.name=<new name>\n"
            f"  or start this one over:      add run.overwrite=true")
    return "finished" if is_finished(run_dir) else "resume"


def _run_record(run_dir: Path) -> dict:
    path = run_dir / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def run_record(cfg) -> dict:
    """The content of ``run.json`` for ``cfg``."""
    return {"fingerprint": fingerprint(cfg), "settings": fingerprint_settings(cfg),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def replaced_dirs(run_dir: str | os.PathLike) -> list[Path]:
    run_dir = Path(run_dir)
    return sorted(run_dir.parent.glob(f".replaced-{run_dir.name}-*"))


def start_run(run_dir: str | os.PathLike, cfg, plan: str) -> Path | None:
    """Create (or reuse) the run directory for ``plan`` and record ``run.json``.

    'overwrite' renames the old run aside to ``.replaced-<name>-<id>`` (one rename: checkpoints,
    metrics and model go together); ``discard_replaced`` deletes it once the new run has written a
    checkpoint, ``undo_start`` puts it back if the new run fails before that. Returns the
    topmost directory this call created (None when it created nothing).
    """
    run_dir = Path(run_dir)
    if plan == "overwrite" and run_dir.exists():
        aside = run_dir.parent / f".replaced-{run_dir.name}-{uuid.uuid4().hex[:8]}"
        run_dir.rename(aside)
        print(f"run.overwrite=true: the previous run is kept at {aside} until this one writes "
              "its first checkpoint")
    created = run_dir.absolute()
    while not created.parent.exists():
        created = created.parent
    created = None if run_dir.exists() else created
    run_dir.mkdir(parents=True, exist_ok=True)
    if plan != "resume" or not (run_dir / RUN_FILE).is_file():
        write_json(run_dir / RUN_FILE, run_record(cfg))
    return created


def undo_start(run_dir: str | os.PathLike, created: Path | None) -> None:
    """After a failure before the first checkpoint: remove what start_run created and put a
    replaced run back, so a bad command leaves the runs root as it was."""
    run_dir = Path(run_dir)
    if created is None or any(run_dir.glob("**/*.ckpt")) or (run_dir / "model").exists():
        return
    shutil.rmtree(created, ignore_errors=True)
    aside = replaced_dirs(run_dir)
    if aside and not run_dir.exists():
        aside[-1].rename(run_dir)


def discard_replaced(run_dir: str | os.PathLike) -> None:
    """The new run has a checkpoint: the run it replaced can go."""
    for old in replaced_dirs(run_dir):
        shutil.rmtree(old, ignore_errors=True)


def resume_record(stage_dir: str | os.PathLike) -> dict:
    path = Path(stage_dir) / RESUME_FILE
    record = json.loads(path.read_text()) if path.is_file() else {}
    return {"starts": 0, "restarts": 0, "resumed_at_steps": [], "wandb_ids": {}, **record}


def update_resume_record(stage_dir: str | os.PathLike, **changes) -> dict:
    record = {**resume_record(stage_dir), **changes}
    write_json(Path(stage_dir) / RESUME_FILE, record)
    return record
