"""Building and loading the causal LM and its tokenizer: from a hub id / path, or the tiny config."""

from __future__ import annotations

import importlib.util
import itertools
import os

import torch
import torch.nn.functional as F
from transformers import (
    AttentionInterface,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from solar.data.template import CHAT_TEMPLATE
from solar.data.tiny.tokenizer import tiny_tokenizer

PACKED_SDPA = "sdpa_packed"


def _segments(position_ids: torch.Tensor) -> list[int]:
    """Start of every example in a packed row (positions restart or jump), plus the row end."""
    starts = (position_ids[1:] != position_ids[:-1] + 1).nonzero().flatten() + 1
    return [0, *starts.tolist(), position_ids.shape[0]]


def sdpa_packed_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                        scaling: float | None = None, position_ids=None, **kwargs):
    """Causal sdpa per packed example: the block-diagonal mask's work without its masked blocks.

    A packed row of 512 tokens holding 12 examples of ~40 tokens costs 12 x 40^2 score entries
    here instead of 512^2 with a dense mask (transformers' sdpa path), the same values. Used only
    when transformers built no mask (no padding mask given, see ``_packed_mask``) and queries and
    keys are the same tokens (no KV cache); everything else goes to the stock sdpa path.
    """
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    gqa = key.shape[1] != query.shape[1]
    rows = []
    # split, not slicing: the backward of ~100 slices of a row would build a zero gradient of the
    # whole row for each slice and add them up (measured: a quarter of a CPU training step);
    # split's backward is one cat.
    for b, (q, k, v) in enumerate(zip(query.split(1), key.split(1), value.split(1))):
        bounds = _segments(position_ids[b if position_ids.shape[0] > 1 else 0])
        sizes = [e - s for s, e in itertools.pairwise(bounds)]
        rows.append(torch.cat([F.scaled_dot_product_attention(
            qs, ks, vs, dropout_p=dropout if module.training else 0.0, is_causal=True,
            scale=scaling, enable_gqa=gqa)
            for qs, ks, vs in zip(q.split(sizes, 2), k.split(sizes, 2), v.split(sizes, 2))], dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def _packed_mask(*args, attention_mask=None, **kwargs):
    """No mask for unpadded (packed) input: sdpa_packed_forward reads the position ids instead."""
    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask,
                                                         **kwargs)


AttentionInterface.register(PACKED_SDPA, sdpa_packed_forward)
AttentionMaskInterface.register(PACKED_SDPA, _packed_mask)


def attention_implementation(requested: str = "auto", packed: bool = False) -> str:
    """flash_attention_2 when CUDA and flash-attn are both present, else sdpa.

    ``packed`` (training on packed rows): without flash-attn, ``sdpa_packed`` (per-example causal
    sdpa, above) instead of sdpa with a dense block-diagonal mask. flash-attn gets the packed rows
    as varlen through the position-id restarts (transformers' packed-sequence detection).
    Decided before the model is built: a failed flash-attn request leaves the config set to it.
    """
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return PACKED_SDPA if packed else "sdpa"


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
