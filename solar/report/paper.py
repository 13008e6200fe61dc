"""The paper's numbers (experiments/paper_results.yaml) and each table's rows (experiments/table<N>.yaml).

Rows are read from the experiment files, never written twice: the report, the experiment driver
and the notebook all use the same lists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import yaml

from solar.runs import CONF_DIR

EXPERIMENTS = CONF_DIR.parent / "experiments"
PAPER_FILE = EXPERIMENTS / "paper_results.yaml"
# The order `table=all` writes them in; the lookup order for a run that several tables hold
# (merge_v1 is Table 7's "Merge v1" before Table 2's leaderboard "SOLAR 10.7B-Instruct").
TABLES = (2, 3, 4, 5, 6, 7)
LOOKUP_ORDER = (3, 4, 5, 6, 7, 2)


@dataclass(frozen=True)
class PaperRow:
    label: str
    extra: tuple[str, ...]
    scores: dict[str, float]   # column key -> points, H6 included


@functools.cache
def paper() -> dict:
    return yaml.safe_load(PAPER_FILE.read_text())


def columns() -> dict[str, str]:
    """Column key -> the paper's title, H6 first, then the six benchmarks in the paper's order."""
    return dict(paper()["columns"])


def benchmarks() -> list[str]:
    return [c for c in columns() if c != "h6"]


def _row(raw: dict) -> PaperRow:
    return PaperRow(raw["label"], tuple(str(e) for e in raw.get("extra", [])),
                    dict(zip(columns(), (float(s) for s in raw["scores"]))))


def paper_table(number: int) -> dict:
    return paper()["tables"][number]


def paper_rows(number: int) -> dict[str, PaperRow]:
    """Run name -> the paper's row, for table ``number``."""
    return {run: _row(raw) for run, raw in paper_table(number)["rows"].items()}


def paper_others(number: int) -> list[PaperRow]:
    """Rows of the paper's table that no run reproduces (Table 2's other models)."""
    return [_row(raw) for raw in paper_table(number).get("others", [])]


def paper_scores(run: str, first: int | None = None) -> dict[str, float] | None:
    """The paper's numbers for ``run``: from table ``first`` if it has the run, else the first
    table of LOOKUP_ORDER that does (findings compare with rows of other tables, e.g. SFT v3)."""
    order = ([first] if first else []) + [t for t in LOOKUP_ORDER if t != first]
    for number in order:
        rows = paper_table(number)["rows"]
        if run in rows:
            return _row(rows[run]).scores
    return None


def experiment(name: str) -> dict:
    path = EXPERIMENTS / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (experiments: "
                                f"{', '.join(sorted(p.stem for p in EXPERIMENTS.glob('table*.yaml')))})")
    return yaml.safe_load(path.read_text()) or {}


def table_rows(number: int) -> list[str]:
    """The run names of Table ``number``, in the paper's row order (experiments/table<N>.yaml)."""
    return list(experiment(f"table{number}")["rows"])


def extra_rows() -> list[str]:
    """Runs of experiments/paper.yaml that are in no paper table (the DUS model, sDPO)."""
    return list(experiment("paper").get("rows", []))


def parse_tables(value) -> list[int]:
    """``table=`` -> table numbers: 2..7, ``all``, or a list of them. Bad input: ValueError."""
    if value is None:
        raise ValueError("set table=<2..7|all>, e.g. `python -m solar.report table=3 scale=tiny`")
    items = [value] if isinstance(value, (str, int)) else list(value)
    out: list[int] = []
    for item in items:
        if str(item).strip().lower() == "all":
            out.extend(t for t in TABLES if t not in out)
            continue
        try:
            number = int(str(item).strip().removeprefix("table"))
        except ValueError:
            number = None
        if number not in TABLES:
            raise ValueError(f"unknown table {item!r}: the paper's result tables are "
                             f"{', '.join(map(str, TABLES))} (or table=all)")
        if number not in out:
            out.append(number)
    return out


def paper_citation() -> str:
    return f"arXiv {paper()['arxiv']} {paper()['version']}"


def family(run: str) -> str:
    """The run's W&B group (its ablation's ``ablation_family``), read from conf/ablation/."""
    path = CONF_DIR / "ablation" / f"{run}.yaml"
    if not path.is_file():
        return run       # dus (solar.upscale) or an ad-hoc run: its own group
    return (yaml.safe_load(path.read_text()) or {}).get("ablation_family", run)
