"""Building and loading the causal LM and its tokenizer: from a hub id / path, or the tiny config."""

from __future__ import annotations

import importlib.util
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from solar.data.template import CHAT_TEMPLATE
from solar.data.tiny.tokenizer import tiny_tokenizer


def attention_implementation(requested: str = "auto") -> str:
    """flash_attention_2 when CUDA and flash-attn are both present, else sdpa.

    Decided before the model is built: a failed flash-attn request leaves the config set to it.
    """
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_tokenizer(pretrained: str | None, cache_dir: str | os.PathLike,
                   trust_remote_code: bool = False):
    """The checkpoint's tokenizer (given the solar chat template if it has none), or the tiny one."""
    if pretrained is None:
        return tiny_tokenizer(cache_dir)
    tok = AutoTokenizer.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    if not tok.chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def load_model(pretrained: str | None, *, architecture: dict | None = None, vocab_size: int = 0,
               seed: int = 0, dtype: torch.dtype = torch.float32, attn: str = "auto",
               trust_remote_code: bool = False):
    """``from_pretrained`` (safetensors only), or a seeded random Llama built from ``architecture``."""
    attn = attention_implementation(attn)
    if pretrained is not None:
        return AutoModelForCausalLM.from_pretrained(
            pretrained, dtype=dtype, attn_implementation=attn, use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    if not architecture:
        raise ValueError("set `model.pretrained` (run name, path or hub id) or `model.architecture`")
    config = LlamaConfig(**{**dict(architecture), "vocab_size": vocab_size or
                            architecture.get("vocab_size", 0)})
    config._attn_implementation = attn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(dtype)
