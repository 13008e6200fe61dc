"""The shared causal-LM LightningModule: model, optimizer, schedule, and step-normalised loss.

One training_step = one optimizer step over ``grad_accum`` micro-batches (manual optimization).
The loss is the sum of token losses over the step's targets divided by the number of targets in
the whole step (across micro-batches and ranks), so gradient accumulation and packing never
re-weight examples: 4 micro-batches x 8 rows is the same objective as 1 x 32 rows.
"""

from __future__ import annotations

import math
import time

import lightning as L
import torch
import torch.nn.functional as F

from solar.data.encode import IGNORE
from solar.distributed import is_sharded, shard
from solar.modeling import attention_implementation, load_model
from solar.objectives.reference import plain_lm_head


def token_loss_sum(model, batch: dict) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the batch's targets, and the number of targets.

    The LM head runs only on the positions that predict a target (plain linear heads: Llama,
    Mistral, Qwen2 ...): SFT prompts, the first token of each packed example and padding never
    get logits, which saves their share of the head's matmul and of the vocab-wide softmax.
    """
    labels = batch["labels"][:, 1:]
    inputs = dict(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                  attention_mask=batch.get("attention_mask"), use_cache=False)
    head = plain_lm_head(model)
    if head is None:
        logits = model(**inputs).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(),
                               ignore_index=IGNORE, reduction="sum")
        return loss, int((labels != IGNORE).sum())
    targets = labels != IGNORE
    hidden = getattr(model, model.base_model_prefix)(**inputs).last_hidden_state[:, :-1]
    loss = F.cross_entropy(head(hidden[targets]).float(), labels[targets], reduction="sum")
    return loss, int(targets.sum())


def clip_gradients(module: L.LightningModule, optimizer, max_norm: float) -> None:
    """Clip the global gradient norm. Under FSDP each rank holds a shard of every gradient
    (DTensors): torch's clip reduces the norm over the shards of all ranks."""
    if is_sharded(module.trainer):
        torch.nn.utils.clip_grad_norm_(module.model.parameters(), max_norm)
    else:
        module.clip_gradients(optimizer, gradient_clip_val=max_norm,
                              gradient_clip_algorithm="norm")


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up to 1, then cosine down to ``min_ratio`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class CausalLMModule(L.LightningModule):
    name = "causal_lm"

    def __init__(self, *, pretrained: str | None = None, architecture: dict | None = None,
                 vocab_size: int = 0, init_seed: int = 0, attn_implementation: str = "auto",
                 trust_remote_code: bool = False, lr: float = 2e-5, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.95), warmup_steps: int = 0,
                 min_lr_ratio: float = 0.1, max_steps: int = 1000, gradient_clip_val: float = 1.0,
                 activation_checkpointing: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # one training_step = one optimizer step
        self.attn = attention_implementation(attn_implementation, packed=True)
        self.model = load_model(pretrained, architecture=architecture, vocab_size=vocab_size,
                                seed=init_seed, attn=self.attn,
                                trust_remote_code=trust_remote_code)
        self.model.train()  # from_pretrained returns eval mode, which Lightning would keep
        if activation_checkpointing:  # per decoder layer, also the FSDP shard unit
            self.model.activation_checkpointing_enable()
        self._no_decay = {n for n, p in self.model.named_parameters() if p.ndim < 2}
        self.tokens_seen = 0
        self._val_sums = [0.0, 0]

    def configure_model(self) -> None:
        """Under trainer.strategy=fsdp, shard the policy over every process (before the optimizer
        is built, so AdamW's state is sharded too). Other strategies: nothing to do."""
        from torch.distributed.fsdp import FSDPModule
        if is_sharded(self.trainer) and not isinstance(self.model, FSDPModule):
            shard(self.model, self.device_mesh, self.trainer.precision)

    def on_fit_start(self) -> None:
        self.print(f"attention implementation: {self.attn}")

    def training_step(self, micro_batches: list[dict], batch_idx: int):
        start = time.perf_counter()
        opt, sched = self.optimizers(), self.lr_schedulers()
        targets = torch.tensor(sum(int((b["labels"][:, 1:] != IGNORE).sum())
                                   for b in micro_batches), device=self.device)
        global_targets = self.all_gather(targets).sum().clamp(min=1)
        # DDP averages gradients over ranks: scale by world_size so the result is sum / targets
        scale = self.trainer.world_size / global_targets
        total = torch.zeros((), device=self.device)
        for batch in micro_batches:
            loss_sum, _ = token_loss_sum(self.model, batch)
            self.manual_backward(loss_sum * scale)
            total += loss_sum.detach()
        clip_gradients(self, opt, self.hparams.gradient_clip_val)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        tokens = sum(b["n_tokens"] for b in micro_batches) * self.trainer.world_size
        self.tokens_seen += tokens
        loss = self.all_gather(total).sum() / global_targets
        self.log_dict({"train/loss": loss, "lr": sched.get_last_lr()[0],
                       "tokens_per_s": tokens / (time.perf_counter() - start),
                       "tokens_seen": float(self.tokens_seen)}, prog_bar=True, on_step=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sums = [0.0, 0]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss_sum, n = token_loss_sum(self.model, batch)
        if not batch.get("repeat"):  # a repeat only keeps the ranks' collectives in step
            self._val_sums[0] += float(loss_sum)
            self._val_sums[1] += n

    def on_validation_epoch_end(self) -> None:
        # token-weighted over every rank's share of the val batches (not a mean of rank means)
        sums = self.all_gather(torch.tensor(self._val_sums, dtype=torch.float64,
                                            device=self.device)).reshape(-1, 2).sum(0)
        if sums[1]:
            self.log("val/loss", float(sums[0] / sums[1]), sync_dist=True)  # equal on all ranks

    def configure_optimizers(self):
        hp = self.hparams
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        decay = [p for n, p in named if n not in self._no_decay]
        no_decay = [p for n, p in named if n in self._no_decay]
        # fused: one kernel per step instead of ~10 elementwise ops per parameter (CPU and CUDA)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=hp.lr, betas=tuple(hp.betas), fused=True)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, hp.warmup_steps, hp.max_steps, hp.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
