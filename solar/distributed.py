"""Several processes: the Lightning strategy (DDP or FSDP) and the full-weights export.

- ``trainer.strategy=ddp``: one model copy per process, gradients all-reduced (gloo on CPU, NCCL on
  GPU). The step loader gives rank r rows r, r + world, ... of each optimizer step, and the loss is
  normalised by the targets of the whole step over all ranks (objectives/base.py), so N ranks x b
  rows train exactly like 1 rank x N·b rows.
- ``trainer.strategy=fsdp`` (models that do not fit one device): Lightning's FSDPStrategy with the
  model's decoder layer class (``_no_split_modules``: LlamaDecoderLayer, MistralDecoderLayer, ...)
  as the shard unit and, with ``objective.activation_checkpointing``, as the checkpoint unit.
  Checkpoints are sharded (each rank writes its shard; resume on the same number of ranks); the
  Hugging Face export gathers the full state dict onto rank 0's CPU.

Lightning and torch refuse FSDP without CUDA ("The strategy `fsdp` requires a GPU accelerator";
torch: "FSDP needs a non-CPU accelerator device"), so on CPU the export path is exercised with DDP.
"""

from __future__ import annotations

import torch

from solar.config import ConfigError


def decoder_layer_class(model: torch.nn.Module) -> type | None:
    """The repeated block FSDP shards and checkpoints one at a time (HF's ``_no_split_modules``)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    return next((type(m) for m in model.modules() if type(m).__name__ in names), None)


def make_strategy(name: str, model: torch.nn.Module, activation_checkpointing: bool):
    """The Trainer's ``strategy``: a configured DDP / FSDP strategy, or Lightning's own name."""
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy
        # the only buffers are rotary tables, equal on every rank: no sync per forward, so
        # ranks may run different numbers of val batches without a collective in between
        return DDPStrategy(forward_sync_buffers=False)
    if name != "fsdp":
        return name
    layer = decoder_layer_class(model)
    if layer is None:
        raise ConfigError([(f"`trainer.strategy`: fsdp needs a decoder layer class to wrap, and "
                            f"{type(model).__name__} declares none (`_no_split_modules`); use "
                            "trainer.strategy=ddp")])
    from lightning.pytorch.strategies import FSDPStrategy
    return FSDPStrategy(auto_wrap_policy={layer}, sharding_strategy="FULL_SHARD",
                        activation_checkpointing_policy={layer} if activation_checkpointing
                        else None, state_dict_type="sharded", limit_all_gathers=True)


def export_state_dict(trainer) -> dict[str, torch.Tensor] | None:
    """The policy's full weights under their Hugging Face names on rank 0 (None elsewhere).

    Every rank must call it: under FSDP it all-gathers each shard (to CPU, rank 0 only), which
    is what makes rank 0's ``save_pretrained`` write the whole model rather than its own shard.
    """
    from lightning.pytorch.strategies import FSDPStrategy
    if isinstance(trainer.strategy, FSDPStrategy):
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        with FSDP.state_dict_type(trainer.strategy.model, StateDictType.FULL_STATE_DICT,
                                  FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
            state = trainer.strategy.model.state_dict()
    else:
        state = trainer.lightning_module.state_dict()
    if not trainer.is_global_zero:
        return None
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
