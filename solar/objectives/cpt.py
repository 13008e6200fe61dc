"""Continued pretraining (Sec. 2): causal-LM loss on every token of the corpus.

Documents are EOS-terminated and chunked to max_length by solar/data/encode.py; every token is a
target except the first of each packed example (it would be predicted across an example boundary).
"""

from solar.objectives.base import CausalLMModule


class CPTModule(CausalLMModule):
    name = "cpt"
