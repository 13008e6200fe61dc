"""Contamination test (Table 9): python -m solar.contamination target=<ref> reference=<ref> [benchmark=...]

compose (conf/contamination.yaml) -> resolve both models -> N items per benchmark -> reference
neighbours -> target losses -> the Table 9 row (+ <target run>/eval/contamination.json).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from solar.cli import exit_user_error, run_command
from solar.eval.contamination import benchmark_items, contamination, format_table9
from solar.eval.h6 import check_data
from solar.eval.options import contamination_options
from solar.eval.tasks import BenchmarkDataError
from solar.runs import CONF_DIR, MissingParentError, resolve_model, write_json

EXPECTED = (BenchmarkDataError, FileNotFoundError, KeyError, MissingParentError, ValueError)


@hydra.main(config_path=str(CONF_DIR), config_name="contamination", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from solar.modeling import load_model, load_tokenizer

    try:  # every option and file check before either model loads
        names = contamination_options(cfg)["benchmarks"]
        target_dir = resolve_model(str(cfg.target), cfg.paths.runs, cfg.scale.name)
        reference_dir = resolve_model(str(cfg.reference), cfg.paths.runs, cfg.scale.name)
        eval_cfg = {**OmegaConf.to_container(cfg.eval), "tasks": names,
                    "num_fewshot": {n: 0 for n in names}}   # only the evaluation files are read
        data_dir = check_data(eval_cfg, cfg.scale.world, cfg.paths.cache)
        if data_dir is None:
            raise ValueError("the contamination test reads local benchmark files: set "
                             "eval.data_dir=<folder> (layout of ../shared/data) or scale=tiny")
        items = {n: benchmark_items(n, data_dir, cfg.n, cfg.seed) for n in names}
    except EXPECTED as err:
        exit_user_error(err)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    models = {}
    for role, path in (("target", target_dir), ("reference", reference_dir)):
        model = load_model(path, dtype=getattr(torch, cfg.eval.dtype)).to(device).eval()
        models[role] = (model, load_tokenizer(path, cfg.paths.cache))
    results = {n: contamination(*models["target"], *models["reference"], texts, k=cfg.k,
                                prefix_fraction=cfg.prefix_fraction, seed=cfg.seed,
                                threshold=cfg.threshold, batch_size=cfg.batch_size)
               for n, texts in items.items()}
    print(format_table9(str(cfg.target), results, cfg.trained_on))
    if Path(target_dir).name == "model":
        out = Path(target_dir).parent / "eval" / "contamination.json"
        write_json(out, {"target": target_dir, "reference": reference_dir, "data_dir": data_dir,
                         "seed": cfg.seed, "results": results})
        print(f"wrote {out}")


if __name__ == "__main__":
    run_command(main, "contamination")
