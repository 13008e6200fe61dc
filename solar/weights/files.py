"""Non-weight files of a checkpoint: tokenizer + chat template, generation config; hub fetch."""

from __future__ import annotations

import shutil
from pathlib import Path

# Files a derived checkpoint inherits unchanged from its (first) parent.
CARRIED = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt",
           "chat_template.*", "generation_config.json", "*.model", "*.tiktoken")
HUB_PATTERNS = ["*.safetensors", "*.json", "*.model", "*.tiktoken", "*.txt", "*.jinja"]


def local_checkpoint(ref: str) -> Path:
    """A resolved model reference as a local directory: hub ids are fetched (safetensors only)."""
    path = Path(ref)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(ref, allow_patterns=HUB_PATTERNS))


def copy_carried_files(src: Path, dst: Path) -> list[str]:
    copied = []
    for pattern in CARRIED:
        for f in sorted(src.glob(pattern)):
            if f.is_file() and not (dst / f.name).exists():
                shutil.copy2(f, dst / f.name)
                copied.append(f.name)
    return copied
