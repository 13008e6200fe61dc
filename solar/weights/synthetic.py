"""Random Llama-architecture checkpoints written straight to safetensors (tests and benchmarks).

No model is instantiated: each tensor is drawn from its own seeded generator and streamed out.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from solar.weights.writer import OutputTensor, write_checkpoint

TAGS = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def llama_shapes(hidden: int, layers: int, vocab: int, intermediate: int,
                 tie: bool = False) -> dict[str, tuple[int, ...]]:
    shapes = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (hidden, hidden),
            p + "self_attn.v_proj.weight": (hidden, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "post_attention_layernorm.weight": (hidden,),
            p + "mlp.gate_proj.weight": (intermediate, hidden),
            p + "mlp.up_proj.weight": (intermediate, hidden),
            p + "mlp.down_proj.weight": (hidden, intermediate),
        })
    shapes["model.norm.weight"] = (hidden,)
    if not tie:
        shapes["lm_head.weight"] = (vocab, hidden)
    return shapes


def write_random_llama(directory: str | Path, *, hidden: int = 64, layers: int = 4,
                       vocab: int = 128, intermediate: int = 96, heads: int = 4,
                       dtype: str = "float32", tie: bool = False, seed: int = 0,
                       max_shard_bytes: int | str = "5GB") -> Path:
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tdtype = getattr(torch, dtype)

    def draw(name, shape):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        if name.endswith("norm.weight"):
            return (1 + 0.1 * torch.randn(shape, generator=gen)).to(tdtype)
        return (0.02 * torch.randn(shape, generator=gen)).to(tdtype)

    tensors = [OutputTensor(n, TAGS[dtype], s, compute=lambda out, n=n, s=s: out.copy_(draw(n, s)))
               for n, s in llama_shapes(hidden, layers, vocab, intermediate, tie).items()]
    write_checkpoint(directory, tensors, max_shard_bytes, progress=False)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": hidden, "intermediate_size": intermediate,
              "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": heads, "vocab_size": vocab, "max_position_embeddings": 256,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": tie, "dtype": dtype,
              "bos_token_id": 1, "eos_token_id": 2}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
