"""DPO (Sec. 3, following Zephyr): the preference objective on top of the shared causal-LM module.

Loss per pair, on log-probs summed over response tokens (prompt masked, solar/data/pairs.py)::

    sigmoid (DPO, cDPO with label smoothing e):
        -(1 - e) log s(b D) - e log s(-b D),  D = (pi_c - ref_c) - (pi_r - ref_r)
    ipo:  (D' - 1 / (2 b))^2,  D' = the same with each log-ratio divided by its response length
          (TRL's normalisation, so beta means the same in both tools)

Chosen and rejected rows of a micro-batch go through one forward. The step loss is the mean over
the pairs of the whole optimizer step (all micro-batches and ranks). The reference is either
precomputed once before training and cached (``reference=precomputed``, default; see
reference.py) or a frozen copy evaluated on every batch (``reference=live``). Metrics carry TRL's
names: rewards/chosen = b (pi_c - ref_c) (batch mean), rewards/rejected, rewards/accuracies,
rewards/margins, logps/chosen, logps/rejected.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from solar.distributed import is_sharded, shard
from solar.modeling import load_model
from solar.objectives.base import CausalLMModule, clip_gradients
from solar.objectives.reference import (
    cache_path,
    compute_logps,
    load_cached,
    save_cached,
    sequence_logps,
)

LOSS_TYPES = ("sigmoid", "ipo")
REFERENCE_MODES = ("precomputed", "live")
METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
           "logps/chosen", "logps/rejected")


def preference_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor,
                    ref_r: torch.Tensor, *, beta: float, loss_type: str = "sigmoid",
                    label_smoothing: float = 0.0, len_c: torch.Tensor | None = None,
                    len_r: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair loss from summed log-probs of policy and reference (see the module docstring)."""
    chosen_ratio, rejected_ratio = pi_c - ref_c, pi_r - ref_r
    if loss_type == "ipo":
        delta = chosen_ratio / len_c.clamp(min=1) - rejected_ratio / len_r.clamp(min=1)
        return (delta - 1 / (2 * beta)) ** 2
    if loss_type != "sigmoid":
        raise ValueError(f"objective.loss_type must be one of {LOSS_TYPES} (got {loss_type!r})")
    delta = beta * (chosen_ratio - rejected_ratio)
    return -(1 - label_smoothing) * F.logsigmoid(delta) - label_smoothing * F.logsigmoid(-delta)


class DPOModule(CausalLMModule):
    name = "dpo"

    def __init__(self, *, beta: float = 0.1, loss_type: str = "sigmoid",
                 label_smoothing: float = 0.0, reference: str = "precomputed",
                 reference_model: str | None = None, reference_fingerprint: str = "",
                 reference_is_policy: bool = True, ref_cache_dir: str | None = None,
                 ref_batch_size: int = 8, **kwargs):
        super().__init__(**kwargs)
        if not beta > 0:
            raise ValueError(f"objective.beta must be > 0 (got {beta})")
        if reference not in REFERENCE_MODES:
            raise ValueError(f"objective.reference must be one of {REFERENCE_MODES} "
                             f"(got {reference!r})")
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing
        self.reference, self.reference_model = reference, reference_model
        self.reference_fingerprint, self.reference_is_policy = reference_fingerprint, \
            reference_is_policy
        self.ref_cache_dir, self.ref_batch_size = ref_cache_dir, ref_batch_size
        self.ref_logps: dict[str, torch.Tensor] | None = None
        self.precompute_seconds = 0.0  # 0 when the cached log-probs were reused
        self._val: list[torch.Tensor] = []

    # -- the reference ------------------------------------------------------------------------
    def _ref_net(self):
        """Holds the live reference outside the module's children: never trained, never saved."""
        return self.__dict__.get("_live_reference")

    def _load_reference(self):
        """The reference weights: the untouched policy at step 0, else a fresh load from disk."""
        if self.trainer.global_step == 0 and self.reference_is_policy:
            return copy.deepcopy(self.model) if self.reference == "live" else self.model
        if self.reference_model is None:
            raise FileNotFoundError("the reference model is gone: a resumed run needs its cached "
                                    "reference log-probs or a saved reference checkpoint")
        model = load_model(self.reference_model, attn=self.attn)
        if is_sharded(self.trainer):  # each rank keeps 1/N of the reference on its device too
            return shard(model, self.device_mesh, self.trainer.precision)
        return model.to(self.device)

    def on_train_start(self) -> None:
        if self.reference == "live":
            if self._ref_net() is None:
                ref = self._load_reference().eval().requires_grad_(False)
                self.__dict__["_live_reference"] = ref
            return
        if self.ref_logps is None:
            self.ref_logps = self.precompute_reference()

    def precompute_reference(self) -> dict[str, torch.Tensor]:
        dm = self.trainer.datamodule
        path = cache_path(self.ref_cache_dir or dm.cache_dir, self.reference_fingerprint,
                          dm.cache_path.name)
        tables = load_cached(path)
        if tables is None:
            start, model = time.perf_counter(), self._load_reference()
            rank, world = self.global_rank, self.trainer.world_size
            tables = {}
            with self.trainer.precision_plugin.forward_context():  # same numerics as training
                for split, rows in (("train", dm.train_rows), ("val", dm.val_rows)):
                    if len(rows):
                        t = compute_logps(model, rows, dm.collate, self.ref_batch_size,
                                          self.device, rank, world)
                        tables[split] = self.all_gather(t).sum(0) if world > 1 else t
            del model
            if self.trainer.is_global_zero:
                save_cached(path, tables, {"reference": self.reference_fingerprint,
                                           "data": dm.cache_path.name})
            self.precompute_seconds = time.perf_counter() - start
            self.print(f"reference log-probs: {sum(len(t) for t in tables.values())} pairs in "
                       f"{self.precompute_seconds:.1f}s -> {path}")
        else:
            self.print(f"reference log-probs: cached {path}")
        self.ref_cache_file = str(path)
        return {k: v.to(self.device) for k, v in tables.items()}

    # -- the loss -----------------------------------------------------------------------------
    def pair_terms(self, batch: dict, split: str) -> dict[str, torch.Tensor]:
        """Per pair: loss, rewards and log-probs of one micro-batch."""
        logps, n = sequence_logps(self.model, batch)
        pi_c, pi_r = logps.chunk(2)
        len_c, len_r = n.chunk(2)
        if self.reference == "live":
            with torch.no_grad():
                ref_c, ref_r = sequence_logps(self._ref_net(), batch)[0].chunk(2)
        else:
            ref = self.ref_logps[split][batch["index"]]
            ref_c, ref_r = ref[:, 0], ref[:, 1]
        loss = preference_loss(pi_c, pi_r, ref_c, ref_r, beta=self.beta, loss_type=self.loss_type,
                               label_smoothing=self.label_smoothing, len_c=len_c, len_r=len_r)
        rc, rr = self.beta * (pi_c - ref_c).detach(), self.beta * (pi_r - ref_r).detach()
        return {"loss": loss, "rewards/chosen": rc, "rewards/rejected": rr,
                "rewards/accuracies": (rc > rr).float(), "rewards/margins": rc - rr,
                "logps/chosen": pi_c.detach(), "logps/rejected": pi_r.detach()}

    def training_step(self, micro_batches: list[dict], batch_idx: int):
        start = time.perf_counter()
        opt, sched = self.optimizers(), self.lr_schedulers()
        pairs = torch.tensor(sum(b["n_pairs"] for b in micro_batches), device=self.device)
        global_pairs = self.all_gather(pairs).sum()
        scale = self.trainer.world_size / global_pairs  # DDP averages gradients over ranks
        sums = torch.zeros(len(METRICS), device=self.device)
        for batch in micro_batches:
            terms = self.pair_terms(batch, "train")
            if not torch.isfinite(terms["loss"]).all():  # fail loudly, never train on a NaN
                raise FloatingPointError(
                    f"DPO loss is not finite at step {self.global_step} (pairs "
                    f"{batch['index'].tolist()}): check objective.beta / lr and the reference "
                    f"log-probs ({getattr(self, 'ref_cache_file', 'live reference')})")
            self.manual_backward(terms["loss"].sum() * scale)
            sums += torch.stack([terms[k].detach().sum() for k in METRICS])
        clip_gradients(self, opt, self.hparams.gradient_clip_val)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        means = self.all_gather(sums).reshape(-1, len(METRICS)).sum(0) / global_pairs
        tokens = sum(b["n_tokens"] for b in micro_batches) * self.trainer.world_size
        self.tokens_seen += tokens
        elapsed = time.perf_counter() - start
        self.log_dict({**{f"train/{k}": v for k, v in zip(METRICS, means)},
                       "lr": sched.get_last_lr()[0], "tokens_per_s": tokens / elapsed,
                       "pairs_per_s": float(global_pairs) / elapsed,
                       "tokens_seen": float(self.tokens_seen)}, prog_bar=True, on_step=True)
        return means[0]

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms = self.pair_terms(batch, "val")
        if batch.get("repeat"):  # a repeat only keeps the ranks' collectives in step
            return
        self._val.append(torch.stack([terms[k].detach().sum() for k in METRICS] +
                                     [torch.tensor(float(batch["n_pairs"]), device=self.device)]))

    def on_validation_epoch_end(self) -> None:
        # every rank joins the gather, also one whose share was only a repeat (none counted)
        mine = torch.stack(self._val).sum(0) if self._val else \
            torch.zeros(len(METRICS) + 1, device=self.device)
        sums = self.all_gather(mine).reshape(-1, len(METRICS) + 1).sum(0)
        if sums[-1] > 0:
            self.log_dict({f"val/{k}": v for k, v in zip(METRICS, sums[:-1] / sums[-1])})
