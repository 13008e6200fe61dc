"""solar.evaluate vs a bare lm-eval run of the same tasks on the same model: wall-time ratio.

    python benchmarks/eval_overhead.py [--limit 5] [--repeat 3]

Both sides run in this process on one tiny random checkpoint and the tiny world's benchmarks:
solar = ``evaluate_h6`` (data check, model + tokenizer load, YAML generation, lm-eval, h6.json);
bare  = load the same checkpoint, then ``lm_eval.simple_evaluate`` on the same task configs
(lm-eval's built-in YAMLs with the dataset fields pointed at the same files). Target: <= 1.1x.
Each side runs --repeat times, alternating which goes first; the best times are compared.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lm_eval
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from lm_eval.tasks._yaml_loader import load_yaml

from solar.data.tiny.benchmarks import materialize_benchmarks
from solar.eval.h6 import evaluate_h6
from solar.eval.tasks import BENCHMARKS, LM_EVAL_TASKS
from solar.modeling import load_model, load_tokenizer

ARCH = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=1024)


def bare_configs(data_dir: Path) -> list[dict]:
    cfgs = []
    subjects = sorted({json.loads(x)["subject"] for x in
                       (data_dir / "mmlu/test.jsonl").read_text().splitlines()})
    for name, b in BENCHMARKS.items():
        for builtin in ([b.builtin.format(subject=s) for s in subjects] if name == "mmlu"
                        else [b.builtin]):
            cfg = load_yaml(LM_EVAL_TASKS / builtin, resolve_func=True)
            files = {s: str(data_dir / b.directory / f"{s}.jsonl")
                     for s in (b.eval_split, b.shot_split) if s}
            if name == "mmlu":  # lm-eval's MMLU reads one subject per task: filter in process_docs
                subj = builtin.split("mmlu_")[1][:-5]
                cfg["process_docs"] = lambda ds, s=subj: ds.filter(lambda r: r["subject"] == s)
            cfg.update(dataset_path="json", dataset_name=None, num_fewshot=b.num_fewshot,
                       dataset_kwargs={"data_files": files}, **{k: None for k in b.null_splits})
            cfgs.append(cfg)
    return cfgs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each side, alternating which goes first; best times compared")
    args = ap.parse_args()
    times: dict[str, list[float]] = {"solar": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        tok = load_tokenizer(None, tmp)
        ckpt = Path(tmp) / "model"
        load_model(None, architecture=ARCH, vocab_size=len(tok)).save_pretrained(ckpt)
        tok.save_pretrained(ckpt)
        data_dir = materialize_benchmarks(tmp)
        cfg = {"data_dir": str(data_dir), "limit": args.limit, "batch_size": 8}

        def run_solar(i: int) -> dict:
            return evaluate_h6(str(ckpt), cfg, Path(tmp) / f"eval{i}", "tiny", tmp)

        def run_bare(i: int) -> dict:
            lm = HFLM(pretrained=load_model(str(ckpt)).eval(),
                      tokenizer=load_tokenizer(str(ckpt), tmp), batch_size=8)
            return lm_eval.simple_evaluate(model=lm, tasks=bare_configs(data_dir),
                                           limit=args.limit,
                                           task_manager=TaskManager(include_defaults=False),
                                           log_samples=False)

        # Whichever side runs first in the process pays one-off costs (lm-eval's task machinery,
        # the datasets cache of the benchmark files): the order alternates and each side's best
        # run is compared, so neither is charged for the other's warm-up.
        sides = {"solar": run_solar, "bare": run_bare}
        for i in range(args.repeat):
            for name in (("solar", "bare") if i % 2 == 0 else ("bare", "solar")):
                t0 = time.perf_counter()
                out = sides[name](i)
                times[name].append(time.perf_counter() - t0)
                if name == "solar":
                    solar = out
                else:
                    bare = out
    same = solar["scores"]["arc_challenge"] == bare["results"]["arc_challenge"]["acc_norm,none"]
    t_solar, t_bare = min(times["solar"]), min(times["bare"])
    for name, ts in times.items():
        print(f"{name:<6} runs: " + ", ".join(f"{t:.1f} s" for t in ts))
    print(f"solar.evaluate {t_solar:.1f} s | bare lm-eval {t_bare:.1f} s | "
          f"ratio {t_solar / t_bare:.2f}x (target <= 1.1x) | same ARC score: {same}")


if __name__ == "__main__":
    main()
