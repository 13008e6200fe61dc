"""H6: the six Open LLM Leaderboard v1 benchmarks through lm-eval, aggregated as the leaderboard did.

H6 = mean of ARC (acc_norm), HellaSwag (acc_norm), MMLU (unweighted mean of subject accuracies,
not lm-eval's size-weighted group score), TruthfulQA mc2, Winogrande (acc), GSM8K (exact match)
x 100.
"""

from __future__ import annotations

import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from statistics import fmean

import lm_eval
import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

from solar.eval.options import eval_options
from solar.eval.results import FULL_FILE, deviations, save_result
from solar.eval.tasks import BENCHMARKS, task_versions, write_task_yamls
from solar.runs import git_sha


def benchmark_scores(results: dict, tasks: list[str], metrics: dict[str, str]) -> dict[str, float]:
    """Per-benchmark score from lm-eval's ``results`` dict; MMLU = plain mean over subjects."""
    per_task = results["results"]
    scores = {}
    for name in tasks:
        key = metrics[name]
        if name == "mmlu":
            subjects = [v[key] for t, v in per_task.items() if t.startswith("mmlu_")]
            scores[name] = fmean(subjects)
        else:
            scores[name] = per_task[name][key]
    return scores


def h6_score(scores: dict[str, float]) -> float:
    """Mean of the benchmark scores, x 100 (the leaderboard's 'Average')."""
    return 100.0 * fmean(scores.values())


def format_table(scores: dict[str, float], h6: float | None) -> str:
    """One row in the paper's column order: H6, ARC, HellaSwag, MMLU, TruthfulQA, Winogrande, GSM8K."""
    names = [n for n in BENCHMARKS if n in scores]
    head = ["H6 (Avg.)"] + [BENCHMARKS[n].title for n in names]
    cells = ["-" if h6 is None else f"{h6:.2f}"] + [f"{100 * scores[n]:.2f}" for n in names]
    widths = [max(len(h), len(c)) for h, c in zip(head, cells)]
    line = lambda xs: " | ".join(x.rjust(w) for x, w in zip(xs, widths))
    return "\n".join([line(head), "-+-".join("-" * w for w in widths), line(cells)])


def metric_keys(gsm8k_filter: str = "strict-match") -> dict[str, str]:
    keys = {name: b.metric for name, b in BENCHMARKS.items()}
    keys["gsm8k"] = f"exact_match,{gsm8k_filter}"
    return keys


def run_h6(lm, tasks: list[str], *, num_fewshot: dict[str, int] | None = None,
           data_dir: str | os.PathLike | None = None, limit: float | None = None,
           gsm8k_filter: str = "strict-match", log_samples: bool = False) -> dict:
    """Evaluate an lm-eval LM on the H6 tasks; return scores, H6 and the provenance for h6.json.

    Task YAMLs are generated into a temporary folder and loaded by path through a TaskManager
    without the built-in index (indexing lm-eval's ~10K task files costs seconds and is not needed:
    each YAML names its built-in by absolute path).
    """
    num_fewshot = dict(num_fewshot or {})
    with tempfile.TemporaryDirectory(prefix="solar-h6-") as tmp:
        yamls = write_task_yamls(tmp, tasks, num_fewshot, data_dir)
        out = lm_eval.simple_evaluate(
            model=lm, tasks=[str(p) for ps in yamls.values() for p in ps], limit=limit,
            task_manager=TaskManager(include_defaults=False), log_samples=log_samples,
        )
    keys = metric_keys(gsm8k_filter)
    scores = benchmark_scores(out, tasks, keys)
    complete = set(tasks) == set(BENCHMARKS)
    subjects = sorted(t for t in out["results"] if t.startswith("mmlu_"))
    return {
        "scores": scores,
        "h6": h6_score(scores) if complete else None,   # only defined over all six
        "metrics": {n: keys[n] for n in tasks},
        "n_shot": {n: out["n-shot"][n if n != "mmlu" else subjects[0]] for n in tasks},
        "mmlu_subjects": subjects,
        "per_task": {t: {k: v for k, v in r.items() if isinstance(v, (int, float))}
                     for t, r in out["results"].items()},
        "limit": limit,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "lm_eval_version": version("lm_eval"),
        "task_versions": task_versions(out),
        "git_sha": git_sha(),
    }


def check_data(eval_cfg, scale_world: str, cache_dir) -> str | None:
    """The data_dir to use (tiny world: its generated benchmarks), checked for files and columns."""
    from solar.data.tiny.benchmarks import materialize_benchmarks

    data_dir = eval_cfg.get("data_dir")
    if data_dir is None and scale_world == "tiny":
        data_dir = str(materialize_benchmarks(cache_dir))
    with tempfile.TemporaryDirectory() as tmp:
        write_task_yamls(tmp, list(eval_cfg.get("tasks") or BENCHMARKS),
                         dict(eval_cfg.get("num_fewshot") or {}), data_dir)
    return data_dir


def evaluate_h6(model_dir: str, eval_cfg, out_dir: str | os.PathLike, scale_world: str,
                cache_dir: str | os.PathLike, logger_run=None) -> dict:
    """Load ``model_dir`` once, run H6 with ``eval_cfg`` (conf/eval/h6.yaml), write the result.

    Full leaderboard settings write ``<out_dir>/h6.json``, any other settings a file named after
    them (solar/eval/results.py). ``scale_world`` 'tiny' with no ``data_dir`` evaluates on the
    tiny world's generated benchmarks. ``logger_run``: a W&B run to log the numbers to (the caller
    owns and finishes it).
    """
    from solar.modeling import load_model, load_tokenizer

    opts = eval_options(eval_cfg)                        # option and data errors fail here,
    data_dir = check_data(opts, scale_world, cache_dir)  # before the slow model load
    trust = bool(opts.get("trust_remote_code", False))
    model = load_model(model_dir, dtype=getattr(torch, opts.get("dtype", "float32")),
                       trust_remote_code=trust)
    device = opts.get("device", "auto")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model.to(device).eval()
    tokenizer = load_tokenizer(model_dir, cache_dir, trust_remote_code=trust)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=opts.get("batch_size", 8))
    result = run_h6(lm, opts["tasks"], num_fewshot=dict(opts.get("num_fewshot") or {}),
                    data_dir=data_dir, limit=opts.get("limit"),
                    gsm8k_filter=opts.get("gsm8k_filter", "strict-match"))
    result["model"] = str(model_dir)
    path = save_result(out_dir, result)
    if logger_run is not None:
        logger_run.log({f"eval/{n}": v for n, v in result["scores"].items()}
                       | ({"eval/h6": result["h6"]} if result["h6"] is not None else {}))
        logger_run.summary.update({f"eval/{path.name}": result})
    print(format_table(result["scores"], result["h6"]))
    if path.name == FULL_FILE:
        print(f"wrote {path}")
    else:
        print(f"wrote {path}: a partial evaluation ({', '.join(deviations(result))} differ from "
              f"the leaderboard settings); {FULL_FILE} holds only full-settings results")
    return result
