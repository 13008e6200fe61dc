"""The evaluation and contamination options, checked before any model is loaded.

A typo in a filter name or a negative limit must not cost a model load and a full evaluation
before it is reported: every problem is collected and named by its key (``ConfigError``), and
the entry points print one ``error:`` line each and exit 2. The benchmark files themselves (few-shot
rows for the requested shots, columns) are checked by ``solar.eval.h6.check_data``, also before
the load.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from solar.config import ConfigError
from solar.eval.contamination import TABLE9_ORDER
from solar.eval.tasks import BENCHMARKS

GSM8K_FILTERS = ("strict-match", "flexible-extract")   # lm-eval's two GSM8K filters
DTYPES = ("float32", "bfloat16", "float16", "float64")
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if isinstance(
        value, (DictConfig, ListConfig)) else value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def names_list(value, key: str, known, errors: list[str]) -> list[str]:
    """A list of benchmark names; a single name is read as a one-element list."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        errors.append(f"`{key}` must be a benchmark name or a non-empty list of them (got "
                      f"{value!r}); known: {list(known)}")
        return []
    unknown = [n for n in names if n not in known]
    if unknown:
        errors.append(f"`{key}`: unknown benchmark(s) {unknown}; known: {list(known)}")
    if len(set(map(str, names))) != len(names):
        errors.append(f"`{key}` names a benchmark twice: {names}")
    return [n for n in names if n in known]


def _dtype(value, key: str, errors: list[str]) -> None:
    if value not in DTYPES:
        errors.append(f"`{key}` must be one of {DTYPES} (got {value!r})")


def eval_option_errors(eval_cfg, prefix: str = "eval") -> list[str]:
    """Every problem of an ``eval`` config (conf/eval/h6.yaml), each naming its key."""
    errors: list[str] = []
    opts = _plain(eval_cfg)
    tasks = opts.get("tasks")   # null: all six
    names_list(list(BENCHMARKS) if tasks is None else tasks, f"{prefix}.tasks", BENCHMARKS,
               errors)
    shots = opts.get("num_fewshot") or {}
    if not isinstance(shots, dict):
        errors.append(f"`{prefix}.num_fewshot` must be a mapping task -> shots, e.g. "
                      f"{{arc_challenge: 5}} (got {shots!r})")
        shots = {}
    for task, n in shots.items():
        key = f"{prefix}.num_fewshot.{task}"
        if task not in BENCHMARKS:
            errors.append(f"`{key}`: unknown benchmark '{task}'; known: {list(BENCHMARKS)}")
        elif not _is_int(n) or n < 0:
            errors.append(f"`{key}` must be an integer >= 0 (got {n!r})")
        elif n > 0 and BENCHMARKS[task].shot_split is None:
            errors.append(f"`{key}`={n}: {task} has no few-shot split (the leaderboard runs it "
                          "0-shot)")
    if opts.get("gsm8k_filter", "strict-match") not in GSM8K_FILTERS:
        errors.append(f"`{prefix}.gsm8k_filter` must be one of {GSM8K_FILTERS} (got "
                      f"{opts.get('gsm8k_filter')!r})")
    limit = opts.get("limit")
    if limit is not None and not ((_is_int(limit) and limit > 0) or (
            isinstance(limit, float) and 0 < limit < 1)):
        errors.append(f"`{prefix}.limit` must be null (every doc), an integer > 0 (docs per "
                      f"task) or a fraction in (0, 1) (got {limit!r})")
    batch = opts.get("batch_size", 8)
    if not ((_is_int(batch) and batch > 0) or (isinstance(batch, str) and
                                                re.fullmatch(r"auto(:\d+)?", batch))):
        errors.append(f"`{prefix}.batch_size` must be an integer > 0 or 'auto' (got {batch!r})")
    _dtype(opts.get("dtype", "float32"), f"{prefix}.dtype", errors)
    if not DEVICE.match(str(opts.get("device", "auto"))):
        errors.append(f"`{prefix}.device` must be auto, cpu, mps, cuda or cuda:<n> (got "
                      f"{opts.get('device')!r})")
    data_dir = opts.get("data_dir")
    if data_dir is not None and not Path(str(data_dir)).expanduser().is_dir():
        errors.append(f"`{prefix}.data_dir` {data_dir} is not a directory")
    return errors


def eval_options(eval_cfg) -> dict:
    """The ``eval`` config as a plain dict (``tasks`` always a list), or ConfigError."""
    errors = eval_option_errors(eval_cfg)
    if errors:
        raise ConfigError(errors)
    opts = _plain(eval_cfg)
    tasks = list(BENCHMARKS) if opts.get("tasks") is None else opts["tasks"]
    return {**opts, "tasks": [tasks] if isinstance(tasks, str) else list(tasks)}


def contamination_options(cfg: DictConfig) -> dict:
    """conf/contamination.yaml checked: models set, benchmarks known, n/k/fractions in range."""
    errors: list[str] = []
    for key in ("target", "reference"):
        if OmegaConf.is_missing(cfg, key) or not cfg.get(key):
            errors.append(f"`{key}` is not set: {key}=<run name | path | hub id>")
    benchmarks = names_list(_plain(cfg.get("benchmark")), "benchmark", TABLE9_ORDER, errors)
    for key in ("n", "k", "batch_size"):
        if not (_is_int(cfg.get(key)) and cfg.get(key) > 0):
            errors.append(f"`{key}` must be an integer > 0 (got {cfg.get(key)!r})")
    if not _is_int(cfg.get("seed")):
        errors.append(f"`seed` must be an integer (got {cfg.get('seed')!r})")
    ranges = {"prefix_fraction": ("(0, 1)", lambda v: 0 < v < 1),  # share of x's words given
              "threshold": ("(0, 1]", lambda v: 0 < v <= 1),
              "trained_on": ("[0, 1]", lambda v: 0 <= v <= 1)}
    for key, (shown, inside) in ranges.items():
        v = cfg.get(key)
        if not (_is_number(v) and inside(v)):
            errors.append(f"`{key}` must be in {shown} (got {v!r})")
    _dtype(cfg.eval.get("dtype", "float32"), "eval.dtype", errors)
    data_dir = cfg.eval.get("data_dir")
    if data_dir is not None and not Path(str(data_dir)).expanduser().is_dir():
        errors.append(f"`eval.data_dir` {data_dir} is not a directory")
    if errors:
        raise ConfigError(errors)
    return {"benchmarks": benchmarks}


def check_eval(eval_cfg, scale_world: str, cache_dir) -> None:
    """solar.train ... eval=h6: the evaluation's options and benchmark files, checked before the
    training (not after hours of it), as ConfigError (solar.train's bad-config exit)."""
    from solar.eval.h6 import check_data   # h6 imports this module

    opts = eval_options(eval_cfg)
    try:
        check_data(opts, scale_world, cache_dir)
    except (KeyError, ValueError) as err:   # BenchmarkDataError is a ValueError
        raise ConfigError([f"eval: {err.args[0] if err.args else err}"]) from err
