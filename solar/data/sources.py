"""Sources: load a dataset in its hub schema (hub id or local files) and map it to canonical records.

Canonical records: ``{"messages": [{"role", "content"}, ...]}`` for instruction data (the last turn is
the assistant's response) and ``{"text": ...}`` for pretraining text. Each schema names the exact
hub columns it needs, so a local file missing one fails with the source, file and column.
"""

from __future__ import annotations

import codecs
import glob
import os
from collections import Counter
from pathlib import Path

import datasets

from solar.data import tiny
from solar.data.filters import table8_task
from solar.data.schemas import (PREFERENCE_SCHEMAS, SCHEMAS, EmptySourceError,  # noqa: F401
                                 SchemaError)

LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _local_format(files: list[str]) -> str:
    suffixes = {Path(f).suffix for f in files}
    if len(suffixes) != 1 or next(iter(suffixes)) not in LOCAL_FORMATS:
        raise ValueError(f"data_files {files}: expected one of {sorted(LOCAL_FORMATS)} (one kind)")
    return LOCAL_FORMATS[suffixes.pop()]


def _check_utf8(name: str, path: str) -> None:
    """pyarrow's JSON reader does not decode strings: a Latin-1 file loads and then fails deep
    inside the first map. Decode it once here (streamed, ~1 s per GB) and name the line."""
    decoder, line = codecs.getincrementaldecoder("utf-8")(), 1
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                line += chunk[:err.start].count(b"\n")
                raise SchemaError(f"source '{name}': data file {path} is not UTF-8 (line {line}: "
                                  f"{err.reason} at byte {chunk[err.start:err.start + 1]!r}); "
                                  "re-encode it, e.g. iconv -f latin1 -t utf-8") from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise SchemaError(f"source '{name}': data file {path} ends inside a UTF-8 "
                              "character (truncated?)") from None


def _load_local(name: str, files: list[str]) -> datasets.Dataset:
    """Local files through ``datasets``; an empty or undecodable file is one SchemaError naming
    it (datasets raises StopIteration, UnicodeDecodeError or a wrapped Arrow error)."""
    import pyarrow

    paths = [p for f in files for p in sorted(glob.glob(f))]
    for path in paths:
        if os.path.getsize(path) == 0:
            raise SchemaError(f"source '{name}': data file {path} is empty")
        if _local_format(files) != "parquet":
            _check_utf8(name, path)
    try:
        return datasets.load_dataset(_local_format(files), data_files=files, split="train")
    except (StopIteration, UnicodeError, pyarrow.ArrowInvalid,
            datasets.exceptions.DatasetGenerationError) as err:
        cause = err.__cause__ or err.__context__ or err
        raise SchemaError(f"source '{name}': cannot read {', '.join(paths)} as "
                          f"{_local_format(files)} (UTF-8 expected): {type(cause).__name__}: "
                          f"{str(cause)[:200]}") from None


def local_files(name: str, spec: dict, world: str,
                cache_dir: str | os.PathLike) -> list[str] | None:
    """The local files source ``name`` is read from (``data_files``, or the tiny world's generated
    file, written once under ``cache_dir``); None for a hub dataset. A missing file names it."""
    files = spec.get("data_files")
    if files is None and world == "tiny":
        files = str(tiny.materialize(spec.get("tiny") or name, cache_dir, seed=spec.get("seed", 0)))
    if files is None:
        return None
    files = [str(f) for f in ([files] if isinstance(files, (str, os.PathLike)) else files)]
    for f in files:
        if not glob.glob(f):
            raise FileNotFoundError(f"source '{name}': data file {f} does not exist")
    return files


def files_fingerprint(name: str, spec: dict, world: str, cache_dir: str | os.PathLike):
    """(path, size, mtime in ns) of every local file source ``name`` reads (per part for a joined
    source such as Synth. Math-Alignment's questions + solutions; None for a hub dataset). Part of
    the tokenized cache's recipe, so an edited local file, or a changed tiny generator (its file
    name carries a digest of its rows), is tokenized again instead of the rows cached before the
    change being trained on. Metadata, not content: hashing a multi-GB corpus would cost minutes."""
    parts = {key: files_fingerprint(f"{name}.{key}", sub, world, cache_dir)
             for key, sub in spec.items() if isinstance(sub, dict) and "schema" in sub}
    if parts:
        return parts
    files = local_files(name, spec, world, cache_dir)
    if files is None:
        return None
    if spec.get("data_files") is None:
        # a generated tiny file: its name holds its rows' digest, and its mtime differs between
        # ranks that generated it side by side, which must still agree on one cache
        return [f"{Path(f).parent.name}/{Path(f).name}" for f in files]
    paths = sorted(p for f in files for p in glob.glob(f))
    return [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]


def load_source(name: str, spec: dict, world: str, cache_dir: str | os.PathLike) -> datasets.Dataset:
    """The raw rows of source ``name`` as a ``datasets.Dataset`` in its hub schema.

    ``world='tiny'`` generates the source (once, cached) with the tiny generator ``spec['tiny']``
    (default: the source's name) and loads that file like any local file. A list ``config_name``
    (e.g. the seven subject configs of EleutherAI/hendrycks_math) loads and concatenates each.
    """
    files = local_files(name, spec, world, cache_dir)
    if files is not None:
        ds = _load_local(name, files)
        where = ", ".join(files)
    else:
        configs = spec.get("config_name")
        configs = [configs] if configs is None or isinstance(configs, str) else list(configs)
        parts = [datasets.load_dataset(spec["hub_id"], c, split=spec["split"]) for c in configs]
        ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        where = f"hub:{spec['hub_id']}"
    expected = SCHEMAS[spec["schema"]]
    missing = [c for c in expected if c not in ds.column_names]
    if missing:
        raise SchemaError(
            f"source '{name}' ({where}) lacks column '{missing[0]}': schema '{spec['schema']}' "
            f"expects columns {expected}, found {ds.column_names}"
        )
    return ds


def _messages(system: str, user: str, assistant: str) -> list[dict]:
    turns = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def to_records(schema: str, ds: datasets.Dataset) -> datasets.Dataset:
    """Map hub rows to canonical records (drops every other column)."""
    if schema == "alpaca_gpt4":
        fn = lambda r: {"messages": _messages(
            "", r["instruction"] + (f"\n\n{r['input']}" if r["input"] else ""), r["output"])}
    elif schema == "openorca":
        fn = lambda r: {"messages": _messages(r["system_prompt"], r["question"], r["response"])}
    elif schema == "metamathqa":
        fn = lambda r: {"messages": _messages("", r["query"], r["response"])}
    elif schema == "text":
        return ds.select_columns(["text"])
    else:
        raise KeyError(f"unknown schema '{schema}' (known: {sorted(SCHEMAS)})")
    return ds.map(fn, remove_columns=ds.column_names, desc=f"records ({schema})")


def prepare_source(name: str, spec: dict, world: str, cache_dir) -> tuple[datasets.Dataset, dict]:
    """Load, filter, cap: the records one source contributes to the mixture, and what was done."""
    ds = load_source(name, spec, world, cache_dir)
    report = {"rows": len(ds)}
    if spec.get("types"):  # MetaMathQA: keep rows of the listed origins (MATH_* for Synth. Math)
        keep = set(spec["types"])
        ds = ds.filter(lambda r: r["type"] in keep, desc=f"{name}: types")
        report["after_types"] = len(ds)
    if spec.get("drop_tasks"):
        tasks = list(spec["drop_tasks"])
        ds = ds.map(lambda r: {"_task": table8_task(r, tasks) or ""}, desc=f"{name}: Table 8")
        report["table8_dropped"] = dict(Counter(t for t in ds["_task"] if t))
        ds = ds.filter(lambda r: not r["_task"], desc=f"{name}: Table 8").remove_columns("_task")
    ds = decontaminate_rows(name, ds, spec.get("decontaminate"), world, cache_dir, report)
    return to_records(spec["schema"], cap_rows(name, ds, spec, report)), report


def cap_rows(name: str, ds: datasets.Dataset, spec: dict, report: dict) -> datasets.Dataset:
    """The seeded subsample to the source's cap (``max_samples``); an empty source is an error."""
    if len(ds) == 0:
        raise EmptySourceError(f"source '{name}' is empty after filtering ({report})")
    cap = spec.get("max_samples")
    if cap is not None and len(ds) > cap:
        ds = ds.shuffle(seed=spec.get("seed", 0)).select(range(cap))
    report["used"] = len(ds)
    return ds


def decontaminate_rows(name: str, ds: datasets.Dataset, decon: dict | None, world: str, cache_dir,
                       report: dict) -> datasets.Dataset:
    """Drop rows sharing an n-gram with the six H6 evaluation sets (solar/data/decontaminate.py)."""
    if not decon:
        return ds
    from solar.data.decontaminate import Decontaminator, benchmark_texts
    from solar.data.tiny.benchmarks import materialize_benchmarks
    data_dir = decon.get("data_dir") or (materialize_benchmarks(cache_dir) if world == "tiny"
                                         else None)
    if data_dir is None:
        raise ValueError(f"`data.sources.{name}.decontaminate.data_dir`: local copies of the "
                         "six benchmarks are needed at paper scale")
    judge = Decontaminator(benchmark_texts(data_dir), n=decon.get("n", 13))
    before = len(ds)
    ds = ds.filter(lambda r: not judge.overlaps(" ".join(str(v) for v in r.values())),
                   desc=f"{name}: decontaminate")
    report["decontaminated"] = before - len(ds)
    return ds
