"""The tables in W&B: a ``report`` run holding each table as a ``wandb.Table`` (+ its PNGs),
grouped like the runs it compares; online, also a W&B Report with one panel grid per table.

Runs are found by name in the project: training runs are named after the ablation (``sft_v3``)
and log ``train/loss``, ``val/loss`` against ``tokens_seen``; ``solar.evaluate`` logs
``eval/<benchmark>`` (fractions) and ``eval/h6`` in a run named ``<name>-eval`` (or ``<name>``
when it evaluates at the end of training).
"""

from __future__ import annotations

from pathlib import Path

from solar.report.paper import benchmarks, columns, family, paper_citation
from solar.report.tables import Table, csv_header, csv_rows


def group_of(tables: list[Table]) -> str:
    """The W&B group the compared runs share (e.g. ``sft``), else ``report``."""
    groups = {family(r.run) for t in tables for r in t.rows}
    return groups.pop() if len(groups) == 1 else "report"


def wandb_table(table: Table):
    import wandb
    return wandb.Table(columns=csv_header(table), data=csv_rows(table))


def log_tables(tables: list[Table], pngs: list[Path], *, project: str, entity: str | None,
               mode: str, out_dir: Path, name: str):
    """Log to a ``report`` run (job_type report) in ``out_dir``/wandb; returns the finished run."""
    import wandb

    run = wandb.init(project=project, entity=entity, name=name, group=group_of(tables),
                     job_type="report", dir=str(out_dir), mode=mode,
                     config={"tables": [t.key for t in tables], "scale": tables[0].scale,
                             "paper": paper_citation()})
    try:
        run.log({t.key: wandb_table(t) for t in tables} |
                {f"plots/{p.stem}": wandb.Image(str(p)) for p in pngs})
        for t in tables:
            run.summary[f"{t.key}/findings"] = {f.text: f.status for f in t.findings}
    finally:
        run.finish()
    return run


def runset_filter(runs: list[str]) -> str:
    """W&B filter expression: a table's training runs and their evaluation runs, by name."""
    names = sorted({n for r in runs for n in (r, f"{r}-eval")})
    return "Name in [" + ", ".join(repr(n) for n in names) + "]"


def build_report(tables: list[Table], *, project: str, entity: str):
    """The W&B Report object (not saved): per table a heading, the table's markdown note, and a
    panel grid filtered to its runs: H6 bar chart, the six columns, loss curves."""
    import wandb_workspaces.reports.v2 as wr

    titles = columns()
    blocks = [wr.P(f"SOLAR 10.7B ({paper_citation()}) reproduced with solar: our numbers beside "
                   "the paper's, table by table.")]
    for t in tables:
        runs = [r.run for r in t.rows]
        blocks += [
            wr.H1(f"Table {t.number}: {t.caption}" if t.number else "Other runs"),
            wr.PanelGrid(
                runsets=[wr.Runset(entity=entity, project=project, name=t.key,
                                   filters=runset_filter(runs))],
                panels=[wr.BarPlot(title="H6 (Avg.)", metrics=["eval/h6"], orientation="v")]
                + [wr.BarPlot(title=titles[b], metrics=[f"eval/{b}"], orientation="v")
                   for b in benchmarks()]
                + [wr.LinePlot(title="loss", x="tokens_seen", y=["train/loss", "val/loss"])],
            ),
        ]
    return wr.Report(project=project, entity=entity, title=f"SOLAR reproduction ({tables[0].scale})",
                     description=paper_citation(), blocks=blocks)
