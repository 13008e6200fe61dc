"""The tiny world's benchmarks are learnable: continued pretraining of the tiny DUS model on the tiny
corpus visibly raises its scores (tiny-world ARC, HellaSwag, TruthfulQA mc2, Winogrande; zero-shot
and 100 docs each to keep the test short; the full leaderboard settings move the same way)."""

from __future__ import annotations

import subprocess
import sys

from hydra import compose, initialize_config_dir

from solar.eval.h6 import evaluate_h6
from solar.runs import CONF_DIR
from solar.train import train

TASKS = "[arc_challenge,hellaswag,truthfulqa_mc2,winogrande]"
ZERO_SHOT = "{arc_challenge:0,hellaswag:0,winogrande:0}"  # the few-shot prompts only cost time here


def test_cpt_raises_the_tiny_benchmark_scores(tmp_path, cache_dir):
    runs = tmp_path / "runs"
    up = subprocess.run([sys.executable, "-m", "solar.upscale", "scale=tiny", f"paths.runs={runs}"],
                        capture_output=True, text=True, cwd=tmp_path)
    assert up.returncode == 0, up.stderr[-2000:]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "+ablation=cpt", "scale=tiny", f"paths.runs={runs}", "logger=csv",
            "trainer.max_steps=100", "trainer.checkpoint_every_n_steps=100", "eval=h6",
            f"eval.tasks={TASKS}", f"++eval.num_fewshot={ZERO_SHOT}", "eval.limit=100"])
    cpt_model = train(cfg)  # eval=h6: evaluates the finished model into runs/tiny/cpt/eval
    before = evaluate_h6(str(runs / "tiny" / "dus" / "model"), cfg.eval, tmp_path / "dus-eval",
                         "tiny", cache_dir)["scores"]
    import json
    # four tasks, zero-shot, 100 docs: a partial evaluation, written beside eval/h6.json
    partial = "h6-arc_challenge+hellaswag+truthfulqa_mc2+winogrande-arc_challenge0shot-" \
        "hellaswag0shot-winogrande0shot-limit100.json"
    after = json.loads((cpt_model.parent / "eval" / partial).read_text())["scores"]
    print("tiny scores before / after CPT:", before, after)
    mean = lambda s: sum(s.values()) / len(s)  # noqa: E731
    assert mean(after) > mean(before) + 0.10  # 100 docs per task: +10 points is far above noise
    assert after["hellaswag"] > before["hellaswag"] and after["arc_challenge"] > \
        before["arc_challenge"]
