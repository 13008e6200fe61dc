"""Test hook for the multi-process tests (tests/test_distributed.py), active only when
SOLAR_TEST_RECORD is set: each rank of `python -m solar.train` appends its per-step losses to
$SOLAR_TEST_RECORD/losses.rank<r>.jsonl (with how many modules are FSDP units and how many
checkpoint their activations), and with SOLAR_TEST_KILL_AT=<k> rank 0 SIGKILLs the
whole process group (every rank, as a node failure would) when optimizer step k begins.

It is put on PYTHONPATH of the subprocesses only; Lightning's DDP launcher re-executes the command
for rank 1, which inherits the environment and so imports this hook too.
"""

import os

if os.environ.get("SOLAR_TEST_RECORD"):
    import json
    import signal

    from solar.objectives.base import CausalLMModule
    from solar.objectives.dpo import DPOModule

    def _recording(original):
        def training_step(self, batch, batch_idx):
            step = self.global_step  # the optimizer step this call takes (0-based)
            kill_at = os.environ.get("SOLAR_TEST_KILL_AT")
            if kill_at and step == int(kill_at) and self.global_rank == 0:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            loss = original(self, batch, batch_idx)
            path = os.path.join(os.environ["SOLAR_TEST_RECORD"],
                                f"losses.rank{self.global_rank}.jsonl")
            from torch.distributed.fsdp import FSDPModule
            layout = {"sharded_units": sum(isinstance(m, FSDPModule) for m in self.model.modules()),
                      "checkpointed": sum(bool(getattr(m, "gradient_checkpointing", False))
                                          for m in self.model.modules())}
            with open(path, "a") as f:
                f.write(json.dumps({"step": step, "loss": float(loss), **layout}) + "\n")
            return loss
        return training_step

    for cls in (CausalLMModule, DPOModule):
        cls.training_step = _recording(cls.training_step)
