"""A paper table with ours beside the paper's numbers: built from the runs root, written as
``runs/<scale>/reports/table<N>.{md,csv,json}`` in the paper's layout.

Cells: ours (paper, Δ = ours − paper) at paper scale; ours (paper) at tiny scale, where a 5.4M
model is not comparable and the findings list says what the tiny numbers reproduce instead.
Bold = the best of the column among the evaluated rows, ties included, as the paper bolds it;
a partial evaluation is flagged and takes no part in the bolding.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from solar.report import findings as findings_mod
from solar.report.paper import (columns, extra_rows, paper, paper_citation, paper_rows,
                                paper_table, table_rows)
from solar.report.results import Result, read_result
from solar.runs import producer_command, run_dir

DASH = "–"


@dataclass
class Row:
    run: str
    label: str
    extra: list[str]
    result: Result
    paper: dict[str, float] | None
    command: str | None = None          # what produces the row while it is not evaluated
    marks: list[int] = field(default_factory=list)   # footnote numbers


@dataclass
class Table:
    key: str                  # "table3" (file stem) or "extra"
    number: int | None
    scale: str
    caption: str
    extra_headers: list[str]
    rows: list[Row]
    notes: list[str]          # numbered footnotes (settings that differ, partial evaluations)
    findings: list[findings_mod.Finding]
    versions: list[str]       # lm-eval versions of our rows

    @property
    def deltas(self) -> bool:
        return self.scale != "tiny" and self.number is not None

    def best(self, column: str, paper: bool = False) -> set[str]:
        """Runs holding the column's best (printed, 2 decimals) value."""
        values = {r.run: (r.paper or {}).get(column) if paper else
                  (None if r.result.partial else r.result.value(column)) for r in self.rows}
        values = {k: round(v, 2) for k, v in values.items() if v is not None}
        top = max(values.values(), default=None)
        return {k for k, v in values.items() if v == top}

    def delta(self, row: Row, column: str) -> float | None:
        ours, theirs = row.result.value(column), (row.paper or {}).get(column)
        if ours is None or theirs is None:
            return None
        return round(round(ours, 2) - theirs, 2)


def evaluate_command(run: str, runs_root, scale: str) -> str:
    """The command(s) that produce a missing row: make the model if needed, then evaluate it."""
    evaluate = f"python -m solar.evaluate model={run} scale={scale}"
    if (run_dir(runs_root, scale, run) / "model").is_dir():
        return evaluate
    return f"{producer_command(run, scale)} && {evaluate}"


def build_table(number: int | None, runs_root, scale: str) -> Table:
    """Table ``number`` (2..7) of the paper, or None: the paper's extra rows (DUS, sDPO)."""
    spec = paper_table(number) if number is not None else {"caption": "Runs of the paper "
                                                           "outside its tables", "extra": []}
    theirs = paper_rows(number) if number is not None else {}
    runs = table_rows(number) if number is not None else extra_rows()
    rows, notes, versions = [], [], set()
    for run in runs:
        result = read_result(run_dir(runs_root, scale, run))
        ref = theirs.get(run)
        row = Row(run, ref.label if ref else run, list(ref.extra) if ref else [], result,
                  ref.scores if ref else None)
        if not result.found:
            row.command = evaluate_command(run, runs_root, scale)
        for note in result.notes:
            notes.append(f"{run}: {note}")
            row.marks.append(len(notes))
        if result.lm_eval_version:
            versions.add(result.lm_eval_version)
        rows.append(row)
    cache: dict[str, Result] = {r.run: r.result for r in rows}

    def ours(run: str, column: str) -> float | None:
        # findings may compare with a row of another table (Table 4: DPO v1 vs SFT v3)
        if run not in cache:
            cache[run] = read_result(run_dir(runs_root, scale, run))
        return cache[run].value(column)

    found = (findings_mod.check(spec.get("findings", []), ours, paper()["tolerance"], columns())
             if number is not None else [])
    return Table(f"table{number}" if number is not None else "extra", number, scale,
                 " ".join(spec["caption"].split()), list(spec.get("extra", [])), rows, notes,
                 found, sorted(versions))


def _num(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def _cell(table: Table, row: Row, column: str, best: set[str], paper_best: set[str]) -> str:
    ours = _num(row.result.value(column))
    if row.run in best and ours != DASH:
        ours = f"**{ours}**"
    if row.paper is None:
        return ours
    theirs = _num(row.paper.get(column))
    if row.run in paper_best:
        theirs = f"**{theirs}**"
    delta = table.delta(row, column)
    if table.deltas and delta is not None:
        return f"{ours} ({theirs}, {_signed(delta)})"
    return f"{ours} ({theirs})"


def render_markdown(table: Table) -> str:
    cols = columns()
    title = f"Table {table.number}" if table.number is not None else "Other runs"
    if table.number is None:
        how = "ours only (the paper reports no numbers for these runs)"
    elif table.deltas:
        how = "each cell: ours (paper, Δ = ours − paper)"
    else:
        how = ("each cell: ours (paper); the paper's numbers are for reference only, a "
               "few-million-parameter model is not comparable, so no deltas")
    lines = [f"# {title}: {table.caption}", "",
             (f"SOLAR 10.7B ({paper_citation()}), scale `{table.scale}`: {how}. "
              "**Bold**: best of the column, as the paper bolds it."), ""]
    head = ["Model"] + table.extra_headers + list(cols.values())
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * (1 + len(table.extra_headers)) +
                                ["---:"] * len(cols)) + "|")
    best = {c: table.best(c) for c in cols}
    paper_best = {c: table.best(c, paper=True) for c in cols}
    for row in table.rows:
        label = row.label + "".join(f" [{m}]" for m in row.marks)
        cells = [label] + row.extra + [_cell(table, row, c, best[c], paper_best[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    missing = [r for r in table.rows if r.command]
    if missing:
        lines += ["", "Not evaluated yet (" + DASH + "); the commands that produce them:", ""]
        lines += [f"- `{r.run}`: `{r.command}`" for r in missing]
    lines += ["", "Notes:", ""]
    lines += [f"[{i}] {note}" for i, note in enumerate(table.notes, 1)]
    board = paper()["leaderboard"]
    ours = ", ".join(f"lm-eval {v}" for v in table.versions) or "no evaluated row yet"
    lines.append(f"[*] Settings: ours {ours}, Open LLM Leaderboard v1 tasks and shots; the paper: "
                 f"{board['harness']} (few-shot sampling and GSM8K stop sequences differ; "
                 "see README, Evaluation).")
    if table.findings:
        lines += ["", "Findings of the paper, checked on our numbers:", ""]
        lines += [f"- **{f.status}**: {f.text} ({f.detail})" for f in table.findings]
    return "\n".join(lines) + "\n"


def csv_header(table: Table) -> list[str]:
    head = ["run", "model"] + table.extra_headers
    for title in columns().values():
        head += [title, f"{title} paper"] + ([f"{title} delta"] if table.deltas else [])
    return head + ["notes"]


def csv_rows(table: Table) -> list[list[str]]:
    """The table's cells as strings, the CSV's rows (and the W&B table's)."""
    out = []
    for row in table.rows:
        cells = [row.run, row.label] + row.extra
        for column in columns():
            cells += [_num(row.result.value(column)).replace(DASH, ""),
                      _num((row.paper or {}).get(column)).replace(DASH, "")]
            if table.deltas:
                cells.append(_signed(table.delta(row, column)))
        notes = [table.notes[m - 1] for m in row.marks] + ([f"not evaluated: {row.command}"]
                                                           if row.command else [])
        out.append(cells + ["; ".join(notes)])
    return out


def render_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(table))
    writer.writerows(csv_rows(table))
    return buf.getvalue()


def to_json(table: Table) -> dict:
    cols = list(columns())
    return {
        "table": table.number, "scale": table.scale, "caption": table.caption,
        "paper": {"arxiv": paper()["arxiv"], "version": paper()["version"]},
        "columns": columns(), "extra_headers": table.extra_headers,
        "rows": [{
            "run": r.run, "label": r.label, "extra": r.extra, "evaluated": r.result.found,
            "partial": r.result.partial, "ours": {c: r.result.value(c) for c in cols},
            "paper": r.paper, "delta": ({c: table.delta(r, c) for c in cols}
                                        if table.deltas and r.paper else None),
            "best": [c for c in cols if r.run in table.best(c)], "notes": r.result.notes,
            "command": r.command, "h6_json": str(r.result.path),
        } for r in table.rows],
        "notes": table.notes, "lm_eval_versions": table.versions,
        "findings": [{"text": f.text, "status": f.status, "detail": f.detail}
                     for f in table.findings],
    }


def write_atomic(path: Path, data: bytes | str) -> None:
    """Temp file + rename: a reader (or the DAG's next check) never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def write_table(table: Table, out_dir: Path) -> list[Path]:
    paths = [Path(out_dir) / f"{table.key}.{ext}" for ext in ("md", "csv", "json")]
    write_atomic(paths[0], render_markdown(table))
    write_atomic(paths[1], render_csv(table))
    write_atomic(paths[2], json.dumps(to_json(table), indent=2, ensure_ascii=False) + "\n")
    return paths
