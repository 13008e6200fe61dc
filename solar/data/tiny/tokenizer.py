"""The tiny world's tokenizer: byte-level BPE trained by the project on the tiny world's own text."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from solar.data.template import CHAT_TEMPLATE
from solar.data.tiny import all_texts

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def build_tokenizer(vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(all_texts(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        pad_token="<pad>", model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_tokenizer(cache_dir: str | os.PathLike, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train once, then load from ``<cache_dir>/tiny_tokenizer-<vocab>-<texts hash>``: the hash of
    the texts it is trained on, so a tokenizer of another version of the tiny world is never read
    as this one."""
    texts = hashlib.sha1("\x00".join(all_texts()).encode()).hexdigest()[:10]
    path = Path(cache_dir) / f"tiny_tokenizer-{vocab_size}-{texts}"
    if not (path / "tokenizer.json").is_file():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        build_tokenizer(vocab_size).save_pretrained(tmp)
        tmp.rename(path) if not path.exists() else None
    return PreTrainedTokenizerFast.from_pretrained(path)
