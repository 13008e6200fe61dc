"""Cases of tests/test_eval_options.py (run there in a process of their own): every
problem naming its key, exit 2. The model loader is replaced by a spy; the valid cases show the
spy is reached when the options are right."""

from __future__ import annotations

import shutil
import sys

import pytest

import solar.modeling
from solar.cli import run_command
from solar.data.tiny.benchmarks import materialize_benchmarks
from solar.weights.synthetic import write_random_llama


class Loaded(RuntimeError):
    """Raised by the spy in place of loading a model."""


@pytest.fixture
def loads(monkeypatch):
    calls = []

    def spy(path, *args, **kwargs):
        calls.append(path)
        raise Loaded(path)

    monkeypatch.setattr(solar.modeling, "load_model", spy)
    return calls


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_random_llama(root / "tiny" / "rand" / "model", seed=0)
    return root


@pytest.fixture(scope="module")
def no_winogrande_train(tmp_path_factory, cache_dir):
    """The tiny world's benchmark files without winogrande/train.jsonl (validation split only)."""
    out = tmp_path_factory.mktemp("data") / "h6"
    shutil.copytree(materialize_benchmarks(cache_dir), out)
    (out / "winogrande" / "train.jsonl").unlink()
    return out


def command(monkeypatch, capsys, entry, *args):
    """Run ``python -m solar.<entry> *args`` in this process: (exit code, stderr)."""
    module = __import__(f"solar.{entry}", fromlist=["main"])
    monkeypatch.setattr(sys, "argv", [f"solar.{entry}", *args])
    with pytest.raises(SystemExit) as stop:
        run_command(module.main, entry)
    return stop.value.code, capsys.readouterr().err


EVAL_BAD = {
    "eval.gsm8k_filter=loose": "`eval.gsm8k_filter`",
    "eval.limit=-3": "`eval.limit`",
    "eval.limit=0": "`eval.limit`",
    "eval.limit=1.5": "`eval.limit`",
    "eval.tasks=arc": "`eval.tasks`: unknown benchmark(s) ['arc']",
    "eval.tasks=[]": "`eval.tasks`",
    "eval.tasks=[gsm8k,gsm8k]": "`eval.tasks` names a benchmark twice",
    "eval.num_fewshot.truthfulqa_mc2=3": "`eval.num_fewshot.truthfulqa_mc2`=3",
    "eval.num_fewshot.arc_challenge=-1": "`eval.num_fewshot.arc_challenge`",
    "eval.num_fewshot.arc_challenge=60": "50 few-shot rows, 60-shot needs at least 60 (add rows, "
                                         "or lower eval.num_fewshot.arc_challenge)",
    "eval.batch_size=0": "`eval.batch_size`",
    "eval.dtype=fp8": "`eval.dtype`",
    "eval.device=gpu": "`eval.device`",
}


@pytest.mark.parametrize("override", list(EVAL_BAD))
def test_evaluate_option_errors_before_the_model_loads(override, runs, loads, monkeypatch,
                                                        capsys, cache_dir):
    code, err = command(monkeypatch, capsys, "evaluate", "model.pretrained=rand", "scale=tiny",
                        f"paths.runs={runs}", "logger.mode=disabled", override)
    lines = err.strip().splitlines()
    assert code == 2 and loads == [], err
    assert all(line.startswith("error: ") for line in lines) and EVAL_BAD[override] in err, err
    assert not (runs / "tiny" / "rand" / "eval").exists()


def test_winogrande_without_train_split_says_how_to_proceed(runs, loads, monkeypatch, capsys,
                                                            no_winogrande_train):
    args = ("model.pretrained=rand", "scale=tiny", f"paths.runs={runs}", "logger.mode=disabled",
            f"eval.data_dir={no_winogrande_train}")
    code, err = command(monkeypatch, capsys, "evaluate", *args)
    assert code == 2 and loads == [] and len(err.strip().splitlines()) == 1
    assert "winogrande/train.jsonl: the few-shot rows of winogrande (5-shot)" in err
    assert "eval.num_fewshot.winogrande=0" in err and "not eval/h6.json" in err
    # following the advice: the options pass and the model is loaded (the spy stops it there)
    code, _ = command(monkeypatch, capsys, "evaluate", *args, "eval.num_fewshot.winogrande=0",
                      "eval.tasks=winogrande")  # a single name is a one-element list
    assert code == 1 and len(loads) == 1


CONTAMINATION_BAD = {
    "n=0": "`n` must be an integer > 0",
    "k=-1": "`k` must be an integer > 0",
    "prefix_fraction=0": "`prefix_fraction` must be in (0, 1)",
    "prefix_fraction=1.0": "`prefix_fraction` must be in (0, 1)",
    "threshold=0": "`threshold`",
    "trained_on=1.5": "`trained_on`",
    "batch_size=0": "`batch_size`",
    "benchmark=arc": "`benchmark`: unknown benchmark(s) ['arc']",
    "benchmark=[]": "`benchmark`",
    "eval.dtype=fp8": "`eval.dtype`",
    "reference=???": "`reference` is not set",
}


@pytest.mark.parametrize("override", list(CONTAMINATION_BAD))
def test_contamination_option_errors_before_the_models_load(override, runs, loads, monkeypatch,
                                                             capsys, cache_dir):
    code, err = command(monkeypatch, capsys, "contamination", "target=rand", "reference=rand",
                        "scale=tiny", f"paths.runs={runs}", override)
    assert code == 2 and loads == [], err
    assert all(x.startswith("error: ") for x in err.strip().splitlines())
    assert CONTAMINATION_BAD[override] in err, err


def test_contamination_valid_options_reach_the_loader(runs, loads, monkeypatch, capsys,
                                                      cache_dir):
    code, _ = command(monkeypatch, capsys, "contamination", "target=rand", "reference=rand",
                      "scale=tiny", f"paths.runs={runs}", "benchmark=gsm8k", "n=3", "k=2")
    assert code == 1 and len(loads) == 1   # the spy's Loaded: a crash to Hydra, exit 1


def test_train_with_eval_checks_the_eval_options_before_training(tmp_path, cache_dir):
    from hydra import compose, initialize_config_dir

    from solar.config import ConfigError
    from solar.runs import CONF_DIR
    from solar.train import train

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["+ablation=sft_v3", "scale=tiny", "eval=h6",
                                          "model.pretrained=null",
                                          f"paths.runs={tmp_path}", "eval.limit=-3"])
    with pytest.raises(ConfigError, match="`eval.limit` must be"):
        train(cfg)
    assert not any(tmp_path.iterdir())   # nothing trained, nothing written
