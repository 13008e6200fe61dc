"""Streaming weight surgery on safetensors checkpoints: depth up-scaling and model merging.

Nothing here instantiates a model: tensors are read one at a time (byte copies or memory-mapped
views) and written into size-bounded shards, so peak memory does not grow with the model.
"""

from solar.weights.checkpoint import Checkpoint, CheckpointError
from solar.weights.dus import upscale_checkpoint
from solar.weights.merge import merge_checkpoints

__all__ = ["Checkpoint", "CheckpointError", "merge_checkpoints", "upscale_checkpoint"]
