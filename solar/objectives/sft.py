"""SFT (Sec. 3): loss on response tokens only.

The prompt mask is made by the data side (solar/data/encode.py labels every prompt token -100);
this module adds nothing to the shared step-normalised loss, which divides by the response tokens
of the whole optimizer step.
"""

from solar.objectives.base import CausalLMModule


class SFTModule(CausalLMModule):
    name = "sft"
