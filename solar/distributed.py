"""Several processes: the Lightning strategy (DDP or FSDP) and the full-weights export.

- ``trainer.strategy=ddp``: one model copy per process, gradients all-reduced (gloo on CPU, NCCL on
  GPU). The step loader gives rank r rows r, r + world, ... of each optimizer step, and the loss is
  normalised by the targets of the whole step over all ranks (objectives/base.py), so N ranks x b
  rows train exactly like 1 rank x N·b rows.
- ``trainer.strategy=fsdp`` (models that do not fit one device): FSDP2 (torch's ``fully_shard``)
  through Lightning's ModelParallelStrategy, data parallel over every process. Each decoder layer
  (HF's ``_no_split_modules``: LlamaDecoderLayer, MistralDecoderLayer, ...) is one shard unit,
  all-gathered just before its forward and freed after; with ``objective.activation_checkpointing``
  the same layer is the recompute unit. Gradients are reduce-scattered, so each rank keeps 1/N of
  the parameters, gradients and AdamW state. Checkpoints are sharded (torch.distributed.checkpoint:
  each rank writes its shard; resume on the same number of ranks); the Hugging Face export gathers
  the full state dict onto rank 0's CPU. FSDP2 runs on CPU too (gloo), so the same path is tested
  there with real ranks (tests/test_distributed.py). The old FSDP1 wrapper (Lightning's
  FSDPStrategy) refuses CPU, which is why it is not used.
"""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import ModelParallelStrategy

from solar.config import ConfigError


def decoder_layer_class(model: torch.nn.Module) -> type | None:
    """The repeated block FSDP shards and checkpoints one at a time (HF's ``_no_split_modules``)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    return next((type(m) for m in model.modules() if type(m).__name__ in names), None)


class FSDP2Strategy(ModelParallelStrategy):
    """ModelParallelStrategy with every process in one data-parallel (sharding) group and no
    tensor parallelism; its own default splits nodes x processes the other way round."""

    def setup_environment(self) -> None:
        self._data_parallel_size, self._tensor_parallel_size = \
            self.num_nodes * self.num_processes, 1
        super().setup_environment()


def make_strategy(name: str, model: torch.nn.Module):
    """The Trainer's ``strategy``: a configured DDP / FSDP strategy, or Lightning's own name."""
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy
        # the only buffers are rotary tables, equal on every rank: no sync per forward, so
        # ranks may run different numbers of val batches without a collective in between
        return DDPStrategy(forward_sync_buffers=False)
    if name != "fsdp":
        return name
    if decoder_layer_class(model) is None:
        raise ConfigError([(f"`trainer.strategy`: fsdp needs a decoder layer class to wrap, and "
                            f"{type(model).__name__} declares none (`_no_split_modules`); use "
                            "trainer.strategy=ddp")])
    return FSDP2Strategy()


def is_sharded(trainer) -> bool:
    return isinstance(trainer.strategy, ModelParallelStrategy)


def shard(model: torch.nn.Module, mesh, precision: str) -> torch.nn.Module:
    """``fully_shard`` each decoder layer, then the root (embeddings, norm, head) over ``mesh``.

    Under bf16 precisions the gathered parameters are bf16 (half the all-gather traffic and
    memory) while the sharded master copy and the gradient reduction stay fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if str(precision).startswith("bf16") else MixedPrecisionPolicy()
    layer = decoder_layer_class(model)
    for module in model.modules():
        if isinstance(module, layer):
            fully_shard(module, mesh=mesh, mp_policy=policy)
    return fully_shard(model, mesh=mesh, mp_policy=policy)


def export_state_dict(trainer) -> dict[str, torch.Tensor] | None:
    """The policy's full weights under their Hugging Face names on rank 0 (None elsewhere).

    Every rank must call it: under FSDP it all-gathers each shard (to CPU, kept on rank 0 only),
    which is what makes rank 0's ``save_pretrained`` write the whole model, not its own shard.
    """
    model = trainer.lightning_module.model
    if is_sharded(trainer):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                     cpu_offload=True))
    else:
        state = model.state_dict()
    return state if trainer.is_global_zero else None
