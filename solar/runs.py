"""Run directories, lineage and model references shared by every entry point.

A run lives in ``runs/<scale>/<name>/`` (DESIGN.md contract). A later stage names its input by
run name (``sft_v3``), by path, or by hub id; ``resolve_model`` turns any of those into something
``from_pretrained`` accepts, or fails with the command that produces the missing parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import yaml

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
WEIGHT_PATTERNS = ("*.safetensors",)


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


def producer_command(name: str, scale: str) -> str:
    """The command that creates run ``name``: what a user should run when it is missing."""
    entry = ablation_entry(name)
    if name == "dus" or entry == "upscale":
        return f"python -m solar.upscale scale={scale}"
    if entry is None:
        return f"python -m solar.train +ablation=<ablation> scale={scale} run.name={name}"
    return f"python -m solar.{entry} +ablation={name} scale={scale}"


def has_weights(path: Path) -> bool:
    return any(any(path.glob(p)) for p in WEIGHT_PATTERNS)


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
        return str(model_dir)
    rdir = run_dir(runs_root, scale, ref)
    if rdir.is_dir() or "/" not in ref:
        model_dir = rdir / "model"
        if model_dir.is_dir() and has_weights(model_dir):
            return str(model_dir)
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


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp dir beside ``final``; rename it into place only if the block succeeds.

    A failure leaves nothing behind, so a half-written output can never be mistaken for a result.
    """
    final = Path(final)
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
    """Write JSON through a temp file + rename (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def write_lineage(model_dir: str | os.PathLike, *, method: str, parents: list[str],
                  params: dict | None = None, data: dict | None = None, **extra) -> None:
    """``lineage.json``: where a checkpoint came from (parents, data recipe, method, parameters,
    and any ``extra`` facts of the method, e.g. the reference of a DPO step)."""
    write_json(Path(model_dir) / "lineage.json", {
        "method": method, "parents": parents, "params": params or {}, "data": data or {},
        "git_sha": git_sha(), **extra,
    })


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
