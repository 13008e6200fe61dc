"""Stepwise DPO (sDPO, Kim et al. 2024): the preference data in steps, each against the last result.

Step k trains a policy initialised from step k-1's model against step k-1's model as the frozen
reference (step 1: the SFT model), on step k's own data mixture (``objective.steps``: a list of
``{name, data: [source names]}``, the sources being keys of ``data.sources``). Each step is a full
stage in ``<run>/steps/<k>-<name>/`` (checkpoints/, model/, lineage.json with the reference's weight
hashes); a finished step is never retrained, an unfinished one resumes from its last checkpoint,
and the last step's model is published as ``<run>/model``.

``objective.order=easy_to_hard`` reorders the steps before step 1 by how often the SFT model
already prefers the chosen response (length-normalised log-prob, on each step's training pairs):
the easiest data first, as in sDPO's easy-to-hard curriculum. The order is stored in
``<run>/sdpo_order.json`` so a resumed run keeps it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from solar.objectives.reference import compute_logps, weight_hashes
from solar.runs import atomic_dir, remove_stale, write_json, write_lineage
from solar.stage import build_data, build_module, fit_stage, stage_logger


def step_sources(cfg: DictConfig, step) -> dict:
    return {name: OmegaConf.to_container(cfg.data.sources[name], resolve=True)
            for name in step.data}


def chosen_preference(model, data) -> float:
    """Share of training pairs where ``model`` gives the chosen response the higher per-token
    log-prob: the step's 'easiness' for the model about to be aligned."""
    rows, device = data.train_rows, next(model.parameters()).device
    logps = compute_logps(model, rows, data.collate, 16, device).cpu()
    n_c = torch.tensor([sum(x != -100 for x in r) for r in rows["chosen_labels"]]).clamp(min=1)
    n_r = torch.tensor([sum(x != -100 for x in r) for r in rows["rejected_labels"]]).clamp(min=1)
    return float((logps[:, 0] / n_c > logps[:, 1] / n_r).float().mean())


def step_order(cfg: DictConfig, run_dir: Path, pretrained: str | None, tokenizer) -> list[int]:
    path = run_dir / "sdpo_order.json"
    if path.is_file():
        return json.loads(path.read_text())["order"]
    steps = list(cfg.objective.steps)
    order, scores = list(range(len(steps))), {}
    if cfg.objective.order == "easy_to_hard":
        model = build_module(cfg, pretrained, tokenizer).model
        # each rank scores on its own GPU (srun / Lightning start every rank before the Trainer)
        local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
        model.to(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        for i, step in enumerate(steps):
            data = build_data(cfg, step_sources(cfg, step), tokenizer)
            data.setup()
            scores[step.name] = chosen_preference(model, data)
        order.sort(key=lambda i: -scores[steps[i].name])
        print(f"sDPO easy-to-hard order: {[steps[i].name for i in order]} (SFT model prefers the "
              f"chosen response on {scores})")
    write_json(path, {"order": order, "chosen_preference": scores,
                      "steps": [steps[i].name for i in order]})
    return order


def prepare_sdpo_data(cfg: DictConfig, tokenizer) -> list:
    """Every step's data, loaded before the run directory exists (data errors leave nothing)."""
    datas = [build_data(cfg, step_sources(cfg, s), tokenizer) for s in cfg.objective.steps]
    for data in datas:
        data.setup()
    return datas


def run_sdpo(cfg: DictConfig, run_dir: Path, pretrained: str | None, tokenizer,
             datas: list | None = None) -> Path:
    """Run (or resume) every step; return the published final model directory."""
    steps = list(cfg.objective.steps)
    datas = datas or prepare_sdpo_data(cfg, tokenizer)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    parent, parent_name = pretrained, cfg.model.pretrained or "init:" + cfg.model.name
    for k, i in enumerate(step_order(cfg, run_dir, pretrained, tokenizer), start=1):
        step = steps[i]
        step_dir = run_dir / "steps" / f"{k}-{step.name}"
        model_out = step_dir / "model"
        remove_stale(model_out)
        if model_out.is_dir():
            print(f"sDPO step {k} ({step.name}) is finished: {model_out}")
        else:
            print(f"sDPO step {k} ({step.name}): policy and reference = {parent_name}")
            module = build_module(cfg, parent, tokenizer)
            reference = {"reference": parent_name, "step": k, "step_name": step.name}
            if parent is not None:
                reference["reference_weights"] = weight_hashes(parent)
            with stage_logger(cfg, step_dir, f"{cfg.run.name}-step{k}") as logger:
                fit_stage(cfg, datas[i], module, step_dir, logger, tokenizer,
                          parents=[parent_name], extra_lineage=reference)
            del module
        parent, parent_name = str(model_out), str(model_out)
    final = run_dir / "model"
    # every rank ran the steps; rank 0 alone publishes (another rank's atomic_dir would remove
    # its temp dir as stale mid-copy), the others wait so that none reads a model not there yet
    if rank_zero_only.rank == 0:
        with atomic_dir(final, overwrite=True) as tmp:
            shutil.copytree(parent, tmp, dirs_exist_ok=True)
            # before the rename, as for every stage (solar/stage.py): no published model without it
            lineage = write_lineage(
                tmp, method="sdpo", parents=[cfg.model.pretrained or "init:" + cfg.model.name],
                params=OmegaConf.to_container(cfg.objective, resolve=True),
                steps=[str(p) for p in sorted((run_dir / "steps").iterdir())])
            write_json(run_dir / "lineage.json", lineage)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return final
