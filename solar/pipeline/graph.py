"""The paper as a graph of solar commands, read off the ablation configs like make reads rules.

Nothing here lists the pipeline. A table names its rows (experiments/<table>.yaml); each row's
composed config names its parents (``model.pretrained: sft_v3``, ``merge.models: [cand_1,
cand_2]``, ``merge.base``), and a parent that is a run name is produced by the ablation of that
name (or by ``solar.upscale`` for ``dus``), recursively, down to hub ids, paths and the tiny init.
Every row gets an H6 evaluation node of its own after it; a table ends with its report node.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from solar.runs import RunDirError, has_weights, plan_run, producer, run_dir

STAGES = ("upscale", "train", "merge", "evaluate", "report")


class GraphError(ValueError):
    """A graph that cannot be built: an unknown row, a cycle, a parent nothing produces."""


@dataclass
class Node:
    name: str                     # run name, `eval:<run>` or `report:<table>`
    stage: str                    # one of STAGES: the entry point and the resources key
    argv: list[str]               # the command, `python -m solar.<stage> ...`
    parents: list[str] = field(default_factory=list)
    run: str | None = None        # the run directory this node writes (None: report)
    done: bool = False            # its finished output exists: skipped
    after_any: bool = False       # runs whatever its parents' outcome (the report)
    output: str | None = None     # exists once the node is finished (model/, eval/h6.json)
    config: DictConfig | None = field(default=None, repr=False)   # composed node config


def parent_refs(entry: str, cfg: DictConfig) -> list[tuple[str, str]]:
    """(config key, reference) of every input model a composed config names."""
    if entry == "merge":
        refs = [(f"merge.models[{i}]", m) for i, m in enumerate(cfg.merge.get("models") or [])]
        if cfg.merge.get("base") is not None:
            refs.append(("merge.base", cfg.merge.base))
        return [(k, str(r)) for k, r in refs]
    ref = cfg.model.get("pretrained")
    return [] if ref is None else [("model.pretrained", str(ref))]


class GraphBuilder:
    """Builds the graph of some rows at one scale.

    ``compose(entry, overrides)`` returns the composed config of an entry point (train, merge,
    upscale); ``overrides`` go to every node, ``stage_overrides[stage]`` to the nodes of a stage and
    ``row_overrides[run]`` to one run's node, on the command line exactly as composed here.
    """

    def __init__(self, compose: Callable[[str, list[str]], DictConfig], *, scale: str,
                 runs_root: Path, cache: Path, overrides: list[str] = (),
                 stage_overrides: dict | None = None, row_overrides: dict | None = None):
        self.compose, self.scale, self.runs_root = compose, scale, Path(runs_root)
        self.common = [f"scale={scale}", f"paths.runs={self.runs_root}", f"paths.cache={cache}",
                       *overrides]
        self.stage_overrides = stage_overrides or {}
        self.row_overrides = row_overrides or {}
        self.nodes: dict[str, Node] = {}

    def command(self, stage: str, args: list[str], run: str | None = None) -> list[str]:
        return [sys.executable, "-m", f"solar.{stage}", *args, *self.common,
                *self.stage_overrides.get(stage, []), *self.row_overrides.get(run, [])]

    def add_row(self, run: str, evaluate: bool = True) -> None:
        self.add_run(run, path=[])
        if evaluate:
            self.add_eval(run)

    def add_run(self, run: str, path: list[str]) -> None:
        """The node producing ``run`` and, first, the nodes of its parents (depth first)."""
        if run in path:
            raise GraphError("cycle in the experiment graph: " + " -> ".join([*path, run]))
        if run in self.nodes:
            return
        made_by = producer(run)
        if made_by is None:
            raise GraphError(f"row '{run}' is produced by no ablation (conf/ablation/{run}.yaml "
                             "does not exist)")
        entry, args = made_by
        argv = self.command(entry, args, run)
        cfg = self.compose(entry, argv[3:])
        if cfg.run.name != run:
            raise GraphError(f"node '{run}': its config writes run.name={cfg.run.name!r}; a row's "
                             "run name must be its ablation's name")
        parents = []
        for key, ref in parent_refs(entry, cfg):
            if self.is_run_name(ref):
                if producer(ref) is None:
                    if self.finished(ref):   # a run made by hand: an input like a hub id
                        continue
                    raise GraphError(
                        f"node '{run}': parent '{ref}' (`{key}`) is produced by no ablation and "
                        f"{run_dir(self.runs_root, self.scale, ref)} has no finished model/")
                self.add_run(ref, [*path, run])
                parents.append(ref)
        rdir = run_dir(self.runs_root, self.scale, run)
        try:   # finished *with these settings* (run.json fingerprint), else it runs (or refuses)
            state = plan_run(rdir, cfg, overwrite=bool(cfg.run.get("overwrite"))) \
                if rdir.exists() else "new"
        except RunDirError as err:
            raise GraphError(f"node '{run}': {err}") from None
        self.nodes[run] = Node(run, entry, argv, parents, run=run, done=state == "finished",
                               output=str(rdir / "model"), config=cfg)

    def add_eval(self, run: str) -> None:
        name = f"eval:{run}"
        output = run_dir(self.runs_root, self.scale, run) / "eval" / "h6.json"
        parents = [] if self.nodes[run].done else [run]
        self.nodes[name] = Node(name, "evaluate", self.command("evaluate", [f"model={run}"], run),
                                parents, run=run, done=output.is_file(), output=str(output))

    def add_report(self, table: int | str, runs: list[str]) -> None:
        """The table's report, after its evaluations; up to date (skipped) when it is newer than
        every evaluation it reads and none of them is to run."""
        evals = [self.nodes[f"eval:{r}"] for r in runs if f"eval:{r}" in self.nodes]
        output = self.runs_root / self.scale / "reports" / f"table{table}.md"
        done = output.is_file() and all(e.done for e in evals) and all(
            output.stat().st_mtime >= Path(e.output).stat().st_mtime for e in evals)
        self.nodes[f"report:table{table}"] = Node(
            f"report:table{table}", "report", self.command("report", [f"table={table}"]),
            [e.name for e in evals if not e.done], done=done, after_any=True, output=str(output))

    def is_run_name(self, ref: str) -> bool:
        """As solar.runs.resolve_model reads a reference: an existing path or an `org/name` hub id
        is an input; anything else names a run under runs/<scale>/."""
        if Path(ref).expanduser().exists():
            return False
        return "/" not in ref or run_dir(self.runs_root, self.scale, ref).is_dir()

    def finished(self, run: str) -> bool:
        model = run_dir(self.runs_root, self.scale, run) / "model"
        return model.is_dir() and has_weights(model)


def topological(nodes: dict[str, Node]) -> list[Node]:
    """Nodes with every parent before its children (insertion order is already depth first)."""
    order, seen = [], set()

    def visit(name: str) -> None:
        if name not in seen:
            seen.add(name)
            for parent in nodes[name].parents:
                visit(parent)
            order.append(nodes[name])

    for name in nodes:
        visit(name)
    return order


def load_experiment(name: str, directory: Path) -> tuple[list[tuple[int | None, list[str]]], list[str]]:
    """(tables as (number, rows), extra rows) of experiments/<name>.yaml (or a path to a YAML).

    A file has ``table: N`` + ``rows: [...]``, or ``tables: [<file>, ...]`` + optional ``rows``.
    """
    path = Path(name) if name.endswith((".yaml", ".yml")) else Path(directory) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(directory).glob("*.yaml"))
        raise GraphError(f"unknown experiment '{name}' (no {path}); known: {', '.join(known)}")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
    unknown = set(spec) - {"table", "tables", "rows"}
    if unknown:
        raise GraphError(f"{path}: unknown key(s) {sorted(unknown)}; expected table, tables, rows")
    rows = list(spec.get("rows") or [])
    tables = []
    for sub in spec.get("tables") or []:
        sub_tables, sub_rows = load_experiment(str(sub), directory)
        tables += sub_tables
        rows += sub_rows
    if spec.get("table") is not None:
        tables.append((spec["table"], rows))
        rows = []
    if not tables and not rows:
        raise GraphError(f"{path}: no `rows` and no `tables`")
    return tables, rows
