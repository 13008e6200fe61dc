"""Preference pairs -> token ids, and the LightningDataModule of DPO / sDPO.

Each pair is tokenized as two conversations (prompt + chosen, prompt + rejected) with the SFT
encoder, so the prompt renders and masks exactly as in SFT and only response tokens (+ EOS) are
targets. Pairs are not packed: one micro-batch of B pairs is one forward of 2B rows, the B chosen
rows first, then the B rejected rows (TRL's layout), right-padded to the longest row.

Length policy: a pair whose prompt alone fills ``max_length`` is dropped and counted
(``dropped_long_prompt`` in the data report); otherwise both sequences are cut to ``max_length``
(keep the start, like TRL) and counted as ``truncated``. Every row keeps its ``index`` in its split,
the key of its precomputed reference log-probs (solar/objectives/reference.py).
"""

from __future__ import annotations

import datasets
import torch

from solar.data.datamodule import SolarDataModule
from solar.data.encode import IGNORE, encode_chat
from solar.data.preference import prepare_preference_source
from solar.data.sources import EmptySourceError

_SEQ = datasets.Sequence(datasets.Value("int32"))
PAIR_ROWS = datasets.Features({"chosen_ids": _SEQ, "chosen_labels": _SEQ, "rejected_ids": _SEQ,
                               "rejected_labels": _SEQ, "index": datasets.Value("int64")})
UNLIMITED = 1 << 30


def prompt_length(labels: list[int]) -> int:
    """Tokens before the first target: the rendered prompt (with BOS and generation prompt)."""
    return next((i for i, x in enumerate(labels) if x != IGNORE), len(labels))


def encode_pair(prompt: list[dict], chosen: str, rejected: str, tokenizer,
                max_length: int) -> dict | None:
    """Token ids and labels of both sequences, or None when the prompt leaves no room."""
    c = encode_chat(prompt + [{"role": "assistant", "content": chosen}], tokenizer, UNLIMITED)
    r = encode_chat(prompt + [{"role": "assistant", "content": rejected}], tokenizer, UNLIMITED)
    n_prompt = prompt_length(c["labels"])
    if n_prompt >= max_length:
        return None
    return {"chosen_ids": c["input_ids"][:max_length], "chosen_labels": c["labels"][:max_length],
            "rejected_ids": r["input_ids"][:max_length],
            "rejected_labels": r["labels"][:max_length],
            "truncated": max(len(c["input_ids"]), len(r["input_ids"])) > max_length}


def collate_pairs(rows: list[dict], pad_id: int) -> dict:
    """2B right-padded rows: chosen of every pair, then rejected; ``index`` keys the reference."""
    seqs = [(r["chosen_ids"], r["chosen_labels"]) for r in rows] + \
           [(r["rejected_ids"], r["rejected_labels"]) for r in rows]
    width = max(len(ids) for ids, _ in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for k, (ids, lab) in enumerate(seqs):
        input_ids[k, :len(ids)] = torch.as_tensor(ids)
        labels[k, :len(lab)] = torch.as_tensor(lab)
        mask[k, :len(ids)] = 1
    position_ids = torch.arange(width).expand(len(seqs), width).contiguous()
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask,
            "position_ids": position_ids, "index": torch.tensor([r["index"] for r in rows]),
            "n_tokens": int(mask.sum()), "n_pairs": len(rows)}


class PreferenceDataModule(SolarDataModule):
    """The SFT data module's recipe cache, step loader and resume, with pairs instead of rows."""

    features = PAIR_ROWS

    def __init__(self, sources: dict, tokenizer, **kwargs):
        kwargs.update(objective="dpo", packing=False)
        super().__init__(sources, tokenizer, **kwargs)

    def prepare_source(self, name: str, spec: dict) -> tuple[datasets.Dataset, dict]:
        return prepare_preference_source(name, spec, self.world, self.cache_dir)

    def _encode(self, records: datasets.Dataset) -> datasets.Dataset:
        tok, n = self.tokenizer, self.max_length

        def fn(batch):
            out = {k: [] for k in ("chosen_ids", "chosen_labels", "rejected_ids",
                                   "rejected_labels", "truncated")}
            for p, c, r in zip(batch["prompt"], batch["chosen"], batch["rejected"]):
                enc = encode_pair(p, c, r, tok, n)
                if enc is not None:
                    for k, column in out.items():
                        column.append(enc[k])
            return out

        ds = records.map(fn, batched=True, remove_columns=records.column_names,
                         desc="tokenize pairs")
        self.encode_report = {"dropped_long_prompt": len(records) - len(ds),
                              "truncated": int(sum(ds["truncated"]))}
        if self.encode_report["dropped_long_prompt"]:
            print(f"dropped {self.encode_report['dropped_long_prompt']} pairs whose prompt fills "
                  f"data.max_length={n}")
        if len(ds) == 0:
            raise EmptySourceError(f"every pair's prompt fills data.max_length={n}")
        return ds.remove_columns("truncated")

    def _rows(self, examples: datasets.Dataset) -> tuple[datasets.Dataset, dict]:
        rows = examples.add_column("index", list(range(len(examples)))).cast(PAIR_ROWS)
        tokens = sum(len(x) for x in rows["chosen_ids"]) + sum(len(x) for x in rows["rejected_ids"])
        return rows, {"examples": len(rows), "pairs": len(rows), "tokens": tokens}

    def collate(self, rows: list[dict]) -> dict:
        return collate_pairs(rows, self.tokenizer.pad_token_id)

    def row_lengths(self) -> list[int]:
        return [max(len(c), len(r)) for c, r in zip(self.train_rows["chosen_ids"],
                                                    self.train_rows["rejected_ids"])]
