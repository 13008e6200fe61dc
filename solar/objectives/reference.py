"""The DPO reference: summed response log-probs, computed once and cached on disk.

The reference of DPO is frozen, so its log-probs of every chosen and rejected response are a
function of (reference weights, tokenized data) only. They are computed in one no-grad pass before
training and stored as safetensors under ``<cache>/ref_logps/<key>.safetensors``, keyed by the
reference's fingerprint (SHA-256 of its weights and config) and the data recipe hash; a rerun, a
resumed run or another objective setting (beta, loss type) on the same pair reuses them, and the
reference is never held in memory while the policy trains.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from solar.data.encode import IGNORE


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fingerprint(pretrained: str | None, architecture: dict | None = None, seed: int = 0) -> str:
    """Identity of a reference model: its weight files and config, or its seeded init recipe."""
    if pretrained is None:
        return "init:" + hashlib.sha256(json.dumps([architecture, seed], sort_keys=True,
                                                   default=str).encode()).hexdigest()
    if not Path(pretrained).is_dir():
        return "hub:" + pretrained  # a hub id: its revision is pinned by the hub cache
    parts = [f"{name}:{digest}" for name, digest in weight_hashes(pretrained).items()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def weight_hashes(model_dir: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every weight file and the config of a checkpoint directory (memoised per file
    state, so the fingerprint and the lineage of a 21 GB reference read it once)."""
    path = Path(model_dir)
    files = sorted(path.glob("*.safetensors")) + [path / "config.json"]
    return dict(_hashes(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)))


@functools.lru_cache(maxsize=8)
def _hashes(files: tuple[tuple[str, int, int], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((Path(f).name, file_sha256(f)) for f, _, _ in files)


def plain_lm_head(model) -> torch.nn.Linear | None:
    """The LM head when logits are a plain linear map of the decoder's last hidden state (Llama,
    Mistral, Qwen2 ...); None for heads with soft-capping or scaling, and under FSDP, whose root
    forward is what all-gathers the embeddings, final norm and head (then full logits are used)."""
    from torch.distributed.fsdp import FSDPModule
    if isinstance(model, FSDPModule):
        return None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    config = getattr(model, "config", None)
    decoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not isinstance(head, torch.nn.Linear) or decoder is None or config is None or any(
            getattr(config, k, None) for k in ("final_logit_softcapping", "logit_scale")):
        return None
    return head


def sequence_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the log-prob of its target tokens, summed (fp32), and how many targets it has.

    One forward over every row of the batch: for DPO that is chosen and rejected together. The LM
    head runs only on the positions that predict a target (a fifth of them in typical pairs): the
    prompt's and padding's logits are never built, which saves time and, at a 32K vocabulary, most
    of the activation memory of the loss.
    """
    labels = batch["labels"][:, 1:]
    targets = labels != IGNORE
    inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  position_ids=batch["position_ids"], use_cache=False)
    head = plain_lm_head(model)
    if head is None:
        logits = model(**inputs).logits[:, :-1]
        token_logps = -F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                                       ignore_index=IGNORE, reduction="none").view(labels.shape)
        return token_logps.sum(-1), targets.sum(-1)
    hidden = getattr(model, model.base_model_prefix)(**inputs).last_hidden_state[:, :-1]
    token_logps = -F.cross_entropy(head(hidden[targets]).float(), labels[targets],
                                   reduction="none")
    rows = targets.nonzero()[:, 0]
    sums = torch.zeros(labels.shape[0], dtype=token_logps.dtype, device=token_logps.device)
    return sums.index_add(0, rows, token_logps), targets.sum(-1)


@torch.no_grad()
def compute_logps(model, rows, collate, batch_size: int, device: torch.device, rank: int = 0,
                  world_size: int = 1) -> torch.Tensor:
    """[len(rows), 2] summed log-probs (chosen, rejected) of every pair, this rank's share filled.

    Rank r computes pairs r, r + world, ...; the caller sums the ranks' tensors (all other
    entries are zero), so the precompute is spread over every GPU of the job.
    """
    was_training = model.training
    model.eval()
    out = torch.zeros(len(rows), 2, dtype=torch.float32, device=device)
    # longest first, similar lengths together: little padding, and an out-of-memory shows at once
    lengths = [max(len(c), len(r)) for c, r in zip(rows["chosen_ids"], rows["rejected_ids"])]
    mine = sorted(range(rank, len(rows), world_size), key=lambda i: -lengths[i])
    # every rank runs as many forwards (under FSDP each one all-gathers the layers with the
    # other ranks): a rank whose share ran out runs one on pair 0 and writes nothing
    for start in range(0, -(-len(rows) // world_size), batch_size):
        ids = mine[start:start + batch_size]
        batch = collate([rows[i] for i in ids or [0]])
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        logps, _ = sequence_logps(model, batch)
        if ids:
            out[batch["index"]] = torch.stack(logps.float().chunk(2), dim=1)
    model.train(was_training)
    return out


def cache_path(cache_dir: str | os.PathLike, reference_fingerprint: str, data_key: str) -> Path:
    key = hashlib.sha256(f"{reference_fingerprint}\n{data_key}".encode()).hexdigest()[:16]
    return Path(cache_dir) / "ref_logps" / f"{key}.safetensors"


def load_cached(path: Path) -> dict[str, torch.Tensor] | None:
    if not path.is_file():
        return None
    try:
        return load_file(path)
    except Exception as err:  # noqa: BLE001 -- a corrupt cache entry is recomputed, never trusted
        print(f"warning: ignoring unreadable reference cache {path} ({err})")
        return None


def save_cached(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write through a temp file + rename: a crash never leaves a truncated cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp,
              metadata=metadata)
    tmp.replace(path)
