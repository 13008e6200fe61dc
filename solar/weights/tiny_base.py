"""The scale=tiny DUS input: the seeded tiny Llama (conf/model/tiny.yaml) as a checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from solar.runs import atomic_dir


def materialise_tiny(architecture: dict, seed: int, cache_dir: str | os.PathLike) -> Path:
    """Build once (seeded, so every run gets the same weights), then reuse from the cache.

    The key holds the tokenizer saved beside the weights (its vocabulary sizes the embeddings):
    a base cached with another tiny tokenizer, e.g. by another version of the tiny world, is never
    read as this one."""
    from solar.modeling import load_model, load_tokenizer  # torch + transformers: tiny only

    tok = load_tokenizer(None, cache_dir)
    vocab = tok.backend_tokenizer.to_str()
    key = hashlib.sha1(json.dumps([architecture, seed, vocab], sort_keys=True).encode()).hexdigest()
    path = Path(cache_dir) / f"tiny_base-{key[:10]}"
    if (path / "config.json").is_file():
        return path
    model = load_model(None, architecture=architecture, vocab_size=len(tok), seed=seed)
    with atomic_dir(path, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return path
