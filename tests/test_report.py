"""solar.report: the paper's tables as data, our tables beside them, findings, plots, W&B, notebook.

Runs roots are written by hand here (eval/h6.json with known numbers, metrics files), so every
expected cell is known in advance; tests/data/report/ holds the expected markdown and CSV.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import fmean

import pytest
from PIL import Image

from solar.report import findings as findings_mod
from solar.report.curves import read_records, series
from solar.report.merges import merge_view
from solar.report.paper import (TABLES, columns, paper, paper_others, paper_rows, paper_scores,
                                parse_tables, table_rows)
from solar.report.plots import BARS_SIZE, CURVES_SIZE, DPI, table_plots
from solar.report.tables import build_table, render_csv, render_markdown, to_json

REPO = Path(__file__).resolve().parent.parent
EXPECTED = REPO / "tests" / "data" / "report"
SIX = ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"]
LEADERBOARD_SHOTS = {"arc_challenge": 25, "hellaswag": 10, "mmlu": 5, "truthfulqa_mc2": 0,
                     "winogrande": 5, "gsm8k": 5}


def write_h6(root: Path, scale: str, run: str, points: list[float], **extra) -> None:
    """eval/h6.json as solar.evaluate writes it; ``points`` = the six scores x 100."""
    data = {"scores": {b: p / 100 for b, p in zip(SIX, points)}, "h6": fmean(points),
            "n_shot": dict(LEADERBOARD_SHOTS), "limit": None, "lm_eval_version": "0.4.13"}
    data.update(extra)
    path = root / scale / run / "eval" / "h6.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


# Paper scale, Table 3: four rows evaluated (one partial, one with a 5-shot ARC), SFT v3+v4 not.
SFT = {"sft_v1": [68.00, 85.00, 66.00, 61.00, 83.00, 50.00],
       "sft_v2": [65.00, 84.00, 65.00, 59.00, 82.00, 58.00],
       "sft_v3": [66.00, 86.50, 64.00, 57.00, 81.00, 65.00],
       "sft_v4": [67.00, 86.50, 66.50, 58.00, 82.50, 64.00]}


@pytest.fixture
def paper_root(tmp_path) -> Path:
    return make_paper_root(tmp_path / "runs")


def make_paper_root(root: Path) -> Path:
    write_h6(root, "paper", "sft_v1", SFT["sft_v1"])
    write_h6(root, "paper", "sft_v2", SFT["sft_v2"], limit=20)
    write_h6(root, "paper", "sft_v3", SFT["sft_v3"])
    shots = dict(LEADERBOARD_SHOTS, arc_challenge=5)
    write_h6(root, "paper", "sft_v4", SFT["sft_v4"], n_shot=shots)
    metrics = root / "paper" / "sft_v1" / "metrics" / "metrics.csv"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("epoch,lr,step,tokens_seen,train/loss,val/loss\n"
                       "0,1e-05,0,1000,3.0,\n0,1e-05,1,2000,2.5,\n0,,1,,,2.4\n"
                       "0,1e-05,2,3000,2.0,\n0,,2,,,1.9\n")
    return root


# Tiny scale, Table 3: numbers chosen so that every finding of the paper holds.
TINY = {"sft_v1": [30.0, 40.0, 25.0, 50.0, 55.0, 1.0],
        "sft_v2": [28.0, 39.0, 25.0, 49.0, 54.0, 2.0],
        "sft_v3": [29.0, 41.0, 26.0, 48.0, 53.0, 4.0],
        "sft_v4": [31.0, 42.0, 27.0, 51.0, 56.0, 5.0],
        "sft_v3_v4": [31.5, 42.5, 27.5, 51.5, 56.5, 6.0]}


def tiny_root(tmp_path: Path, override: dict | None = None) -> Path:
    root = tmp_path / "tiny-runs"
    for run, points in (TINY | (override or {})).items():
        write_h6(root, "tiny", run, points)
    return root


# --- the paper's numbers ------------------------------------------------------------------

def test_paper_h6_is_the_mean_of_its_six_columns():
    checked = 0
    for number in TABLES:
        raw_rows = list(paper()["tables"][number]["rows"].values())
        raw_rows += paper()["tables"][number].get("others", [])
        for raw in raw_rows:
            h6, six = raw["scores"][0], raw["scores"][1:]
            assert len(six) == 6
            if "h6_not_mean" in raw:     # Cand. 2: the PDF's H6 is 73.28, its six average 73.29
                assert abs(fmean(six) - h6) > 0.01
                assert round(fmean(six), 2) == raw["h6_not_mean"]
            else:
                assert abs(fmean(six) - h6) <= 0.01, (number, raw["label"], fmean(six), h6)
            checked += 1
    assert checked == 2 + 11 + 5 + 3 + 2 + 2 + 4


def test_paper_data_matches_the_experiment_rows_and_the_printed_page():
    for number in TABLES:
        assert list(paper_rows(number)) == table_rows(number)   # same runs, the paper's order
    assert [r.label for r in paper_rows(3).values()] == [
        "SFT v1", "SFT v2", "SFT v3", "SFT v4", "SFT v3 + v4"]
    assert paper_rows(3)["sft_v4"].extra == ("O", "✗", "O")           # Table 3's data ticks
    assert paper_rows(4)["dpo_v1"].extra == ("O", "✗")               # Table 4's data ticks
    assert paper_rows(7)["merge_v4"].extra == ("SLERP",)              # Table 7's merge method
    assert paper_rows(7)["merge_v3"].extra == ("Average (0.6, 0.4)",)
    assert paper_rows(2)["merge_v1"].scores["h6"] == 74.20            # leaderboard, Table 2
    assert paper_rows(7)["merge_v1"].scores["h6"] == 74.00            # authors' run, Table 7
    assert paper_rows(6)["cand_1"].scores["gsm8k"] == 66.57
    assert len(paper_others(2)) == 11 and paper_others(2)[0].label == "Qwen 72B"
    # the dropped digit of the PDF (Winogrande "2.08") is kept as printed, beside the value used
    raw = paper()["tables"][3]["rows"]["sft_v3_v4"]
    assert raw["printed"]["winogrande"] == 2.08 and raw["scores"][5] == 82.08
    assert paper()["arxiv"] == "2312.15166"


def test_leaderboard_settings_agree_with_the_evaluation_code():
    from solar.eval.tasks import BENCHMARKS
    assert paper()["leaderboard"]["n_shot"] == {n: b.num_fewshot for n, b in BENCHMARKS.items()}
    assert [columns()[n] for n in SIX] == [b.title for b in BENCHMARKS.values()]


def test_every_finding_holds_on_the_papers_own_numbers():
    for number in TABLES:
        spec = paper()["tables"][number]
        found = findings_mod.check(spec["findings"],
                                   lambda run, col, n=number: (paper_scores(run, n) or {}).get(col),
                                   paper()["tolerance"], columns())
        assert found and all(f.status == "reproduced" for f in found), (number, found)


# --- the table at paper scale ---------------------------------------------------------------

def test_paper_scale_table_equals_the_stored_markdown_and_csv(paper_root):
    table = build_table(3, paper_root, "paper")
    md, text = render_markdown(table), render_csv(table)
    assert md == (EXPECTED / "table3_paper.md").read_text()
    assert text == (EXPECTED / "table3_paper.csv").read_text()


def test_deltas_and_bolding_cell_by_cell(paper_root):
    table = build_table(3, paper_root, "paper")
    rows = {r.run: r for r in table.rows}
    # ours − paper, on the printed (2-decimal) numbers
    expected = {"sft_v1": [68.00 - 67.66, 85.00 - 86.03, 66.00 - 65.88, 61.00 - 60.12,
                           83.00 - 82.95, 50.00 - 52.24],
                "sft_v3": [66.00 - 65.87, 86.50 - 85.55, 64.00 - 65.31, 57.00 - 57.93,
                           81.00 - 81.37, 65.00 - 64.14]}
    for run, deltas in expected.items():
        for col, delta in zip(SIX, deltas):
            assert table.delta(rows[run], col) == pytest.approx(round(delta, 2), abs=1e-9)
    assert table.delta(rows["sft_v1"], "h6") == round(round(fmean(SFT["sft_v1"]), 2) - 69.15, 2)
    assert table.delta(rows["sft_v3_v4"], "arc_challenge") is None        # not evaluated
    # best of ours: the partial sft_v2 (eval.limit) takes no part; ties are all bold
    assert table.best("arc_challenge") == {"sft_v1"}
    assert table.best("hellaswag") == {"sft_v3", "sft_v4"}
    assert table.best("gsm8k") == {"sft_v3"}
    assert table.best("h6") == {"sft_v4"}
    # the paper's bold: SFT v3+v4 on H6 and GSM8K, SFT v1 on ARC
    assert table.best("h6", paper=True) == {"sft_v3_v4"}
    assert table.best("arc_challenge", paper=True) == {"sft_v1"}
    assert table.best("gsm8k", paper=True) == {"sft_v3_v4"}
    data = to_json(table)
    assert data["rows"][0]["best"] == ["arc_challenge", "truthfulqa_mc2", "winogrande"]
    assert data["rows"][4]["command"] == ("python -m solar.merge +ablation=sft_v3_v4 scale=paper"
                                          " && python -m solar.evaluate model=sft_v3_v4 scale=paper")
    assert data["rows"][1]["partial"] and "eval.limit=20" in data["rows"][1]["notes"][0]
    assert data["rows"][3]["notes"] == ["ARC 5-shot (leaderboard: 25)"]


def test_older_or_broken_h6_json_is_flagged_not_fatal(tmp_path):
    root = tmp_path / "runs"
    old = root / "paper" / "dpo_v1" / "eval" / "h6.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"scores": {"arc_challenge": 0.7, "hellaswag": 0.88}}))
    bad = root / "paper" / "dpo_v2" / "eval" / "h6.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    table = build_table(4, root, "paper")
    rows = {r.run: r for r in table.rows}
    assert rows["dpo_v1"].result.value("arc_challenge") == pytest.approx(70.0)
    assert rows["dpo_v1"].result.value("h6") is None and rows["dpo_v1"].result.partial
    assert "no MMLU, TruthfulQA, Winogrande, GSM8K" in rows["dpo_v1"].result.notes[0]
    assert not rows["dpo_v2"].result.found and "unreadable" in rows["dpo_v2"].result.notes[0]
    md = render_markdown(table)
    assert "| DPO v1 [1] | O | ✗ | – (73.06, " not in md     # no delta without our H6
    assert "| DPO v1 [1] | O | ✗ | – (73.06) | 70.00 (71.42, -1.42) |" in md
    assert "`dpo_v2`: `python -m solar.train +ablation=dpo_v2 scale=paper && " in md


# --- the tiny scale: findings instead of deltas ---------------------------------------------

def test_tiny_findings_are_computed_and_a_planted_reversal_flips_one(tmp_path):
    table = build_table(3, tiny_root(tmp_path), "tiny")
    assert [f.status for f in table.findings] == ["reproduced"] * 4
    md = render_markdown(table)
    assert "(paper, Δ" not in md and "| **31.50** (67.32) |" in md    # no deltas at tiny scale
    assert ("- **reproduced**: Synth. Math-Instruct raises GSM8K: v3 > v2, v4 > v1 (GSM8K sft_v3 "
            "4.00 > sft_v2 2.00; GSM8K sft_v4 5.00 > sft_v1 1.00)") in md
    assert "delta" not in render_csv(table).splitlines()[0]

    reversed_root = tiny_root(tmp_path / "reversed",
                              {"sft_v3": [29.0, 41.0, 26.0, 48.0, 53.0, 1.5]})   # v3 < v2
    flipped = build_table(3, reversed_root, "tiny").findings
    assert [f.status for f in flipped] == ["reproduced", "not reproduced", "reproduced",
                                           "reproduced"]
    assert flipped[1].detail == "fails: GSM8K sft_v3 1.50 > sft_v2 2.00"

    (reversed_root / "tiny" / "sft_v2" / "eval" / "h6.json").unlink()
    missing = build_table(3, reversed_root, "tiny").findings
    assert [f.status for f in missing][:2] == ["not evaluated", "not evaluated"]
    assert missing[0].detail == "needs sft_v2"


def test_findings_reach_rows_of_other_tables(tmp_path):
    root = tiny_root(tmp_path)       # Table 4's findings compare DPO v1 with SFT v3 (Table 3)
    write_h6(root, "tiny", "dpo_v1", [31.0, 43.0, 26.0, 52.0, 54.0, 3.0])
    found = build_table(4, root, "tiny").findings
    assert found[0].status == "reproduced"      # H6 dpo_v1 34.83 > sft_v3 33.50
    assert found[1].status == "reproduced"      # GSM8K dpo_v1 3.00 < sft_v3 4.00
    assert found[2].status == "not evaluated"


# --- plots and curves -----------------------------------------------------------------------

def test_plots_are_images_of_the_expected_size(tmp_path, paper_root):
    dpo = paper_root / "paper" / "dpo_v1" / "metrics" / "metrics.csv"
    dpo.parent.mkdir(parents=True)
    dpo.write_text("step,tokens_seen,train/loss,train/rewards/margins,train/rewards/accuracies\n"
                   "0,100,0.69,0.0,0.5\n1,200,0.60,0.3,0.75\n2,300,0.52,0.6,1.0\n")
    table = build_table(3, paper_root, "paper")
    dirs = {r.run: paper_root / "paper" / r.run for r in table.rows}
    pngs = table_plots(table, dirs, {r: "sft" for r in dirs}, tmp_path / "reports")
    assert [p.name for p in pngs] == ["table3.png", "table3_loss_sft.png"]  # no DPO rewards here
    rewards = table_plots(build_table(4, paper_root, "paper"),
                          {"dpo_v1": dpo.parent.parent}, {"dpo_v1": "dpo"}, tmp_path / "reports")
    assert [p.name for p in rewards] == ["table4.png", "table4_loss_dpo.png", "table4_rewards.png"]
    for png in pngs + rewards:
        with Image.open(png) as img:
            w, h = CURVES_SIZE if "_" in png.stem else BARS_SIZE
            assert img.size == (int(w * DPI), int(h * DPI))
            lo, hi = img.convert("L").getextrema()
            assert hi - lo > 100          # something is drawn, not a blank canvas


def test_curves_read_the_csv_logger_and_the_wandb_offline_run_alike(tmp_path, paper_root):
    from_csv = read_records(paper_root / "paper" / "sft_v1")
    assert series(from_csv, "train/loss") == [(1000, 3.0), (2000, 2.5), (3000, 2.0)]
    assert series(from_csv, "val/loss") == [(2000, 2.4), (3000, 1.9)]   # tokens carried forward
    import wandb
    run_path = tmp_path / "wb" / "sft_v2"
    run = wandb.init(project="solar", name="sft_v2", dir=str(run_path), mode="offline")
    for step, (loss, tokens) in enumerate([(3.0, 1000), (2.5, 2000)]):
        run.log({"train/loss": loss, "tokens_seen": tokens, "trainer/global_step": step})
    run.log({"val/loss": 2.4, "trainer/global_step": 1})
    run.finish()
    from_wandb = read_records(run_path)
    assert series(from_wandb, "train/loss") == [(1000, 3.0), (2000, 2.5)]
    assert series(from_wandb, "val/loss") == [(2000, 2.4)]
    assert series(from_wandb, "train/loss", x=None) == [(0, 3.0), (1, 2.5)]


# --- the entry point, W&B ---------------------------------------------------------------------

def run_report(*args, root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=str(REPO), SOLAR_RUNS=str(root))
    return subprocess.run([sys.executable, "-m", "solar.report", *args], cwd=root.parent,
                          env=env, capture_output=True, text=True, timeout=180, check=False)


def test_report_cli_writes_the_files_and_the_wandb_table_holds_the_same_cells(paper_root):
    out = run_report("table=3", "scale=paper", f"paths.runs={paper_root}", root=paper_root)
    assert out.returncode == 0, out.stderr
    reports = paper_root / "paper" / "reports"
    assert (reports / "table3.md").read_text() == (EXPECTED / "table3_paper.md").read_text()
    assert (reports / "table3.csv").read_text() == (EXPECTED / "table3_paper.csv").read_text()
    assert json.loads((reports / "table3.json").read_text())["rows"][0]["ours"]["gsm8k"] == 50.0
    assert (reports / "table3.png").is_file() and (reports / "table3_loss_sft.png").is_file()
    assert not list(reports.glob(".*.tmp"))
    assert "wandb sync " in out.stdout
    # the offline run, read back with wandb's own reader: the logged table = the CSV's cells
    [run_dir] = reports.glob("wandb/offline-run-*")
    records = [json.loads(line) for line in subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
        capture_output=True, text=True, check=True).stdout.splitlines()]
    item = next(r["history"]["item"] for r in records
                if r["type"] == "history" and "table3.path" in r["history"]["item"])
    logged = json.loads((run_dir / "files" / item["table3.path"]).read_text())
    rows = list(csv.reader(io.StringIO((EXPECTED / "table3_paper.csv").read_text())))
    assert logged["columns"] == rows[0]
    assert logged["data"] == rows[1:]
    run_record = next(r["run"] for r in records if r["type"] == "run")
    assert run_record["job_type"] == "report" and run_record["run_group"] == "sft"


def test_report_cli_bad_table_is_one_error_line_and_exit_2(tmp_path):
    out = run_report("table=9", root=tmp_path / "runs")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: unknown table 9: the paper's result tables are 2, 3, 4, 5, 6, 7 (or table=all)"]
    empty = run_report("table=6", "scale=tiny", "logger=csv", root=tmp_path / "runs")
    assert empty.returncode == 0, empty.stderr
    assert "none of the rows has an eval/h6.json" in empty.stdout
    written = (tmp_path / "runs" / "tiny" / "reports" / "table6.md").read_text()
    assert "| Cand. 1 | – (**73.73**) | – (70.48) |" in written
    assert "- `cand_1`: `python -m solar.train +ablation=cand_1 scale=tiny && " in written
    with pytest.raises(ValueError, match="set table="):
        parse_tables(None)
    assert parse_tables("all") == [2, 3, 4, 5, 6, 7] and parse_tables([4, "table3"]) == [4, 3]


def test_wandb_workspaces_report_has_a_filtered_panel_grid_per_table(paper_root):
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    from solar.report.wandb_report import build_report
    tables = [build_table(3, paper_root, "paper"), build_table(7, paper_root, "paper")]
    report = build_report(tables, project="solar", entity="my-team")   # built, never saved
    assert report.project == "solar" and report.entity == "my-team"
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    assert next(h.text for h in report.blocks if isinstance(h, wr.H1)).startswith("Table 3: ")
    assert len(grids) == 2
    names = expr.expr_to_filters(grids[1].runsets[0].filters)
    text = json.dumps(names.model_dump() if hasattr(names, "model_dump") else names.dict())
    for run in ("merge_v1", "merge_v4-eval"):
        assert run in text
    assert grids[0].runsets[0].filters.startswith("Name in ['sft_v1', 'sft_v1-eval', ")
    panels = grids[0].panels
    assert [p.metrics for p in panels if isinstance(p, wr.BarPlot)] == [
        ["eval/h6"]] + [[f"eval/{b}"] for b in SIX]
    [loss] = [p for p in panels if isinstance(p, wr.LinePlot)]
    assert loss.x == "tokens_seen" and loss.y == ["train/loss", "val/loss"]


# --- the merge view and the notebook ----------------------------------------------------------

def test_merge_view_compares_a_merge_with_its_parents(tmp_path):
    root = tiny_root(tmp_path)
    view = merge_view("sft_v3_v4", root, "tiny").splitlines()
    assert view[2].startswith("| sft_v3_v4 (merge) | 35.92 | 31.50 |")
    assert view[3:5] == ["| sft_v3 | 33.50 | 29.00 | 41.00 | 26.00 | 48.00 | 53.00 | 4.00 |",
                         "| sft_v4 | 35.33 | 31.00 | 42.00 | 27.00 | 51.00 | 56.00 | 5.00 |"]
    assert view[-1] == ("| merge − best parent | +0.59 | +0.50 | +0.50 | +0.50 | +0.50 | +0.50 "
                        "| +1.00 |")


def test_notebook_is_paired_without_outputs_and_executes_on_a_tiny_runs_root(tmp_path,
                                                                          monkeypatch):
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    stored = nbformat.read(REPO / "notebooks" / "compare_ablations.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code")
    paired = jupytext.read(REPO / "notebooks" / "compare_ablations.py")
    assert [c.source for c in paired.cells] == [c.source for c in stored.cells]

    root = tiny_root(tmp_path)
    dpo = root / "tiny" / "dpo_v1" / "metrics" / "metrics.csv"
    dpo.parent.mkdir(parents=True)
    dpo.write_text("step,train/rewards/margins,train/rewards/accuracies\n0,0.0,0.5\n1,0.4,0.8\n")
    monkeypatch.setenv("SOLAR_RUNS", str(root))
    monkeypatch.setenv("SOLAR_SCALE", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(stored, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("data", {}).get("text/markdown", "") for c in stored.cells
                     for o in c.get("outputs", []))
    assert "| **31.50** (67.32) |" in text                       # Table 3, ours beside the paper
    assert "| merge − best parent | +0.59 | +0.50 |" in text            # the merge view of sft_v3_v4
    errors = [o for c in stored.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
