"""H6 through lm-eval: solar's scores equal a direct lm-eval call on the built-in tasks pointed at
the same real rows (../shared/data), MMLU/H6 aggregation by hand, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import fmean

import lm_eval
import pytest
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval's own loader of its task YAMLs

from solar.eval.h6 import benchmark_scores, h6_score, metric_keys, run_h6
from solar.eval.results import is_full, result_file, save_result
from solar.eval.tasks import BENCHMARKS, LM_EVAL_TASKS, BenchmarkDataError, write_task_yamls
from solar.modeling import load_model, load_tokenizer

ARCH = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=1024)
MMLU_SUBJECTS = 3   # the test uses the real MMLU rows of 3 subjects (57 tasks would cost minutes)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cache_dir) -> Path:
    """A tiny randomly initialised Llama + the tiny tokenizer, saved as a HF checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "model"
    tok = load_tokenizer(None, cache_dir)
    load_model(None, architecture=ARCH, vocab_size=len(tok), seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def real_data(shared_data, tmp_path_factory) -> Path:
    """../shared/data rows in a data_dir. HellaSwag and Winogrande have no train rows there: their
    few-shot rows are drawn from the evaluation file itself (copied as train.jsonl)."""
    out = tmp_path_factory.mktemp("h6data")
    for bench in ("arc_challenge", "truthfulqa_mc", "gsm8k", "hellaswag", "winogrande"):
        shutil.copytree(shared_data / bench, out / bench)
    shutil.copy(out / "hellaswag" / "validation.jsonl", out / "hellaswag" / "train.jsonl")
    shutil.copy(out / "winogrande" / "validation.jsonl", out / "winogrande" / "train.jsonl")
    test = [json.loads(x) for x in (shared_data / "mmlu" / "test.jsonl").read_text().splitlines()]
    counts = {}
    for r in test:
        counts[r["subject"]] = counts.get(r["subject"], 0) + 1
    keep = sorted(s for s, c in counts.items() if c >= 3)[:MMLU_SUBJECTS]
    (out / "mmlu").mkdir()
    for split in ("test", "dev"):
        rows = [json.loads(x) for x in (shared_data / "mmlu" / f"{split}.jsonl").read_text()
                .splitlines()]
        (out / "mmlu" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows if r["subject"] in keep))
    return out


class ShortGenHFLM(HFLM):
    max_gen_toks = 16   # a random model never stops by itself: keep GSM8K generation short


def _lm(checkpoint) -> HFLM:
    # batch_size 1: every request is scored alone, so grouping requests into one lm-eval call
    # (solar) or six (the reference) cannot change a float
    return ShortGenHFLM(pretrained=load_model(str(checkpoint)).eval(),
                tokenizer=load_tokenizer(str(checkpoint), None), batch_size=1)


def _reference(lm, builtin: str, files: dict, shots: int, limit: int, nulls=()) -> dict:
    """A direct lm-eval call: the built-in task config, its dataset fields pointed at ``files``."""
    cfg = load_yaml(LM_EVAL_TASKS / builtin, resolve_func=True)
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files},
               **{k: None for k in nulls})
    return lm_eval.simple_evaluate(model=lm, tasks=[cfg], num_fewshot=shots, limit=limit,
                                   task_manager=TaskManager(include_defaults=False),
                                   log_samples=False)["results"]


def test_scores_equal_direct_lm_eval(checkpoint, real_data):
    lm, limit, d = _lm(checkpoint), 2, real_data
    got = run_h6(lm, ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande",
                      "gsm8k"], data_dir=d, limit=limit)
    f = lambda b, s: str(d / b / f"{s}.jsonl")
    ref = {}
    ref |= _reference(lm, "arc/arc_challenge.yaml", {"test": f("arc_challenge", "test"),
                      "train": f("arc_challenge", "train")}, 25, limit, ["validation_split"])
    ref |= _reference(lm, "hellaswag/hellaswag.yaml", {"validation": f("hellaswag", "validation"),
                      "train": f("hellaswag", "train")}, 10, limit)
    ref |= _reference(lm, "truthfulqa/truthfulqa_mc2.yaml",
                      {"validation": f("truthfulqa_mc", "validation")}, 0, limit)
    ref |= _reference(lm, "winogrande/default.yaml", {"validation": f("winogrande", "validation"),
                      "train": f("winogrande", "train")}, 5, limit)
    ref |= _reference(lm, "gsm8k/gsm8k.yaml", {"test": f("gsm8k", "test"),
                      "train": f("gsm8k", "train")}, 5, limit)
    subjects = sorted({json.loads(x)["subject"] for x in
                       (d / "mmlu" / "test.jsonl").read_text().splitlines()})
    for s in subjects:  # the reference splits MMLU by subject itself
        files = {}
        for split in ("test", "dev"):
            rows = [x for x in (d / "mmlu" / f"{split}.jsonl").read_text().splitlines()
                    if json.loads(x)["subject"] == s]
            path = d.parent / f"ref-mmlu-{s}-{split}.jsonl"
            path.write_text("\n".join(rows) + "\n")
            files[split] = str(path)
        ref |= _reference(lm, f"mmlu/default/mmlu_{s}.yaml", files, 5, limit)

    keys = metric_keys()
    for task in ("arc_challenge", "hellaswag", "truthfulqa_mc2", "winogrande", "gsm8k"):
        assert got["scores"][task] == ref[task][keys[task]], task
    assert got["mmlu_subjects"] == [f"mmlu_{s}" for s in subjects]
    mmlu = [ref[f"mmlu_{s}"]["acc,none"] for s in subjects]
    assert got["scores"]["mmlu"] == fmean(mmlu)
    assert got["h6"] == pytest.approx(100 * fmean(got["scores"].values()), abs=1e-12)
    assert got["n_shot"] == {"arc_challenge": 25, "hellaswag": 10, "mmlu": 5,
                             "truthfulqa_mc2": 0, "winogrande": 5, "gsm8k": 5}
    assert got["task_versions"]["gsm8k"] == 3.0 and got["lm_eval_version"]


def test_mmlu_macro_average_and_h6_by_hand():
    # subject sizes 100 / 10 / 1: lm-eval's size-weighted group score would be 0.9099...
    results = {"results": {
        "arc_challenge": {"acc_norm,none": 0.5, "acc,none": 0.1},
        "hellaswag": {"acc_norm,none": 0.25},
        "mmlu_anatomy": {"acc,none": 0.9}, "mmlu_astronomy": {"acc,none": 1.0},
        "mmlu_virology": {"acc,none": 0.2},
        "truthfulqa_mc2": {"acc,none": 0.4},
        "winogrande": {"acc,none": 0.6},
        "gsm8k": {"exact_match,strict-match": 0.1, "exact_match,flexible-extract": 0.3}}}
    tasks = ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"]
    scores = benchmark_scores(results, tasks, metric_keys())
    assert scores["mmlu"] == pytest.approx(0.7)                    # (0.9 + 1.0 + 0.2) / 3
    assert h6_score(scores) == pytest.approx(42.5)                 # (.5+.25+.7+.4+.6+.1)/6*100
    flexible = benchmark_scores(results, tasks, metric_keys("flexible-extract"))
    assert flexible["gsm8k"] == 0.3


def test_bad_data_dir_names_what_is_missing(real_data, tmp_path):
    out = tmp_path / "yamls"
    with pytest.raises(KeyError, match="unknown H6 task"):
        write_task_yamls(out, ["arc"], {}, real_data)
    broken = tmp_path / "data"
    shutil.copytree(real_data, broken)
    (broken / "gsm8k" / "train.jsonl").unlink()
    with pytest.raises(BenchmarkDataError, match="gsm8k/train.jsonl"):
        write_task_yamls(out, ["arc_challenge", "gsm8k"], {}, broken)
    rows = [json.loads(x) for x in (broken / "winogrande/validation.jsonl").read_text().splitlines()]
    (broken / "winogrande/validation.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "option2"}) + "\n" for r in rows))
    with pytest.raises(BenchmarkDataError, match="option2"):
        write_task_yamls(out, ["winogrande"], {}, broken)
    with pytest.raises(BenchmarkDataError, match="25-shot needs at least 25"):
        write_task_yamls(out, ["arc_challenge"], {"arc_challenge": 25},
                         _truncated(real_data, tmp_path / "few"))
    assert not out.exists()   # validation happens before anything is written


def _truncated(data: Path, out: Path) -> Path:
    (out / "arc_challenge").mkdir(parents=True)
    shutil.copy(data / "arc_challenge/test.jsonl", out / "arc_challenge/test.jsonl")
    rows = (data / "arc_challenge/train.jsonl").read_text().splitlines()[:10]
    (out / "arc_challenge/train.jsonl").write_text("\n".join(rows) + "\n")
    return out


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "solar.evaluate", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_partial_evaluation_leaves_the_full_h6_json_untouched(checkpoint, tmp_path,
                                                                   cache_dir):
    runs = tmp_path / "runs"
    shutil.copytree(checkpoint, runs / "tiny" / "rand" / "model")
    full = runs / "tiny" / "rand" / "eval" / "h6.json"
    full.parent.mkdir()
    full.write_text('{"h6": 61.5, "full": true}\n')   # a full six-task result from before
    res = _cli("model=rand", "scale=tiny", f"paths.runs={runs}", "eval.limit=2",
               "eval.tasks=[arc_challenge,mmlu,winogrande]", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert full.read_text() == '{"h6": 61.5, "full": true}\n'
    partial = full.with_name("h6-arc_challenge+mmlu+winogrande-limit2.json")
    out = json.loads(partial.read_text())
    assert set(out["scores"]) == {"arc_challenge", "mmlu", "winogrande"} and out["h6"] is None
    assert out["full"] is False and out["evaluated_at"]
    assert out["limit"] == 2 and out["n_shot"]["arc_challenge"] == 25 and out["git_sha"]
    assert out["model"].endswith("rand/model") and "tiny_world" in out["data_dir"]
    assert "ARC" in res.stdout and "Winogrande" in res.stdout
    assert f"wrote {partial}: a partial evaluation" in res.stdout


def _result(scores, limit=None, n_shot=None, gsm8k="exact_match,strict-match"):
    shots = {t: BENCHMARKS[t].num_fewshot for t in scores} | (n_shot or {})
    return {"scores": scores, "h6": 100 * fmean(scores.values()), "limit": limit,
            "n_shot": shots, "metrics": {"gsm8k": gsm8k} if "gsm8k" in scores else {},
            "model": "m", "git_sha": "abc"}


def test_only_full_settings_reach_h6_json_and_history_keeps_the_old_scores(tmp_path):
    six = {t: 0.5 for t in BENCHMARKS}
    names = {
        "h6.json": _result(six),
        "h6-arc_challenge-limit4.json": _result({"arc_challenge": 0.3}, limit=4),
        "h6-winogrande0shot.json": _result(six, n_shot={"winogrande": 0}),
        "h6-limit0.1.json": _result(six, limit=0.1),
        "h6-flexible-extract.json": _result(six, gsm8k="exact_match,flexible-extract"),
    }
    for name, result in names.items():
        assert result_file(result) == name and is_full(result) == (name == "h6.json")
    first = save_result(tmp_path, _result(six))
    for name, result in names.items():   # partial results never touch h6.json
        if name != "h6.json":
            assert save_result(tmp_path, result).name == name
    assert json.loads(first.read_text())["scores"] == six
    second = save_result(tmp_path, _result({t: 0.75 for t in BENCHMARKS}))
    third = save_result(tmp_path, _result({t: 0.25 for t in BENCHMARKS}))
    assert first == second == third
    out = json.loads(third.read_text())
    assert out["full"] is True and out["h6"] == 25.0
    assert [h["h6"] for h in out["history"]] == [75.0, 50.0]   # newest first, nothing lost
    assert out["history"][0]["scores"]["gsm8k"] == 0.75 and out["history"][0]["evaluated_at"]


def test_cli_bad_model_path_is_a_clear_error(tmp_path):
    (tmp_path / "notackpt").mkdir()
    res = _cli(f"model={tmp_path / 'notackpt'}", f"paths.runs={tmp_path / 'runs'}", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("error: model path") and "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "notackpt" / "eval").exists()
