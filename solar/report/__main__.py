"""Results: python -m solar.report table=<2..7|all> [scale=tiny] [paths.runs=<root>]

compose (conf/report.yaml) -> the table's rows (experiments/table<N>.yaml) -> each row's
eval/h6.json beside the paper's numbers (experiments/paper_results.yaml) ->
<paths.runs>/<scale>/reports/table<N>.{md,csv,json} + PNGs -> a W&B `report` run (+ a Report
online). A row not evaluated yet is "–" with the command that produces it: exit 0, so the report
node of an experiment graph can run at any time; a bad `table=` exits 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from solar.cli import run_command
from solar.report.paper import family, parse_tables
from solar.report.tables import build_table, render_markdown, write_table
from solar.runs import CONF_DIR, run_dir


@hydra.main(config_path=str(CONF_DIR), config_name="report", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        numbers = parse_tables(cfg.table)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    scale, root = cfg.scale.name, cfg.paths.runs
    out_dir = run_dir(root, scale, "reports")
    tables = [build_table(n, root, scale) for n in numbers]
    if len(numbers) > 1:
        tables.append(build_table(None, root, scale))   # table=all: also the DUS and sDPO runs
    written, pngs = [], []
    for table in tables:
        written += write_table(table, out_dir)
        if cfg.plots:
            from solar.report.plots import table_plots
            dirs = {r.run: run_dir(root, scale, r.run) for r in table.rows}
            pngs += table_plots(table, dirs, {r: family(r) for r in dirs}, out_dir)
        print(render_markdown(table))
    if not any(r.result.found for t in tables for r in t.rows):
        print(f"none of the rows has an eval/h6.json under {run_dir(root, scale, '')}: the "
              "tables hold '–' and the commands that produce each row")
    for path in written + pngs:
        print(f"wrote {path}")
    if cfg.logger.name == "wandb":
        log_to_wandb(cfg, tables, pngs, out_dir)


def log_to_wandb(cfg: DictConfig, tables, pngs, out_dir) -> None:
    from solar.loggers import wandb_mode
    from solar.report.wandb_report import build_report, log_tables

    mode = wandb_mode(cfg.logger.get("mode", "auto"))
    if mode == "disabled":
        return
    name = "report-" + ("all" if len(tables) > 1 else tables[0].key)
    run = log_tables(tables, pngs, project=cfg.logger.project, entity=cfg.logger.get("entity"),
                     mode=mode, out_dir=out_dir, name=name)
    if mode == "offline":
        print(f"W&B offline (no API key): upload with `wandb sync {Path(run.dir).parent}`")
    elif cfg.wandb_report:
        report = build_report(tables, project=cfg.logger.project,
                              entity=cfg.logger.get("entity") or run.entity)
        report.save()
        print(f"W&B Report: {report.url}")


if __name__ == "__main__":
    run_command(main, "report")   # composition errors exit 2, as every entry point
