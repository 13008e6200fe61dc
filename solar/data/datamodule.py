"""The LightningDataModule: sources -> records -> tokens -> packed rows -> optimizer-step batches.

Built from plain arguments (no Hydra config), so tests and notebooks construct it directly.
The tokenized, packed dataset is cached under ``<cache_dir>/tokenized/<recipe hash>/``: a second run
with the same recipe (sources, caps, tokenizer, template, length, packing) skips straight to training.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import datasets
import lightning as L
import torch

from solar.data.encode import IGNORE, encode_chat, encode_text
from solar.data.packing import concat_row, pack
from solar.data.sources import EmptySourceError, files_fingerprint, prepare_source

CACHE_VERSION = 1
ROWS = datasets.Features({k: datasets.Sequence(datasets.Value("int32"))
                          for k in ("input_ids", "labels", "position_ids")})  # bump when encoding or packing changes what a cached recipe contains


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    state = tokenizer.backend_tokenizer.to_str() + str(tokenizer.chat_template)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


class StepLoader:
    """Yields one optimizer step at a time: a list of ``grad_accum`` collated micro-batches.

    Whole steps (rather than micro-batches) let the objective normalise the loss by the target
    tokens of the entire step. Order is a seeded permutation per epoch; ``start_step`` skips the
    steps already taken when a run resumes, so a resumed run sees exactly the batches it would have.
    """

    def __init__(self, rows: datasets.Dataset, micro_batch_size: int, grad_accum: int, seed: int,
                 collate_fn, rank: int = 0, world_size: int = 1,
                 lengths: list[int] | None = None):
        self.rows, self.mbs, self.accum, self.seed = rows, micro_batch_size, grad_accum, seed
        self.collate, self.rank, self.world = collate_fn, rank, world_size
        self.lengths = lengths  # given: group similar lengths into the same step (less padding)
        self.start_step = 0
        self.per_step = micro_batch_size * grad_accum * world_size
        if len(rows) < self.per_step:
            raise EmptySourceError(f"{len(rows)} rows < one optimizer step of {self.per_step}"
                                   " rows; lower data.micro_batch_size or data.grad_accum")

    def __len__(self) -> int:
        return len(self.rows) // self.per_step

    def __iter__(self):
        epoch, skip = divmod(self.start_step, len(self))
        self.start_step += len(self) - skip  # the next __iter__ is the next epoch
        order, rng = list(range(len(self.rows))), random.Random(self.seed + epoch)
        rng.shuffle(order)
        if self.lengths is not None:
            order = self._grouped_by_length(order, rng)
        for step in range(skip, len(self)):
            ids = order[step * self.per_step:(step + 1) * self.per_step][self.rank::self.world]
            yield [self.collate([self.rows[i] for i in ids[k * self.mbs:(k + 1) * self.mbs]])
                   for k in range(self.accum)]


    def _grouped_by_length(self, order: list[int], rng: random.Random) -> list[int]:
        """Like transformers' group_by_length: sort mega-batches of 50 steps by length, cut them
        into steps, shuffle the steps. Each step pads to a similar length; the data order stays a
        seeded function of the epoch, so resume is unchanged."""
        order = order[:len(self) * self.per_step]  # the epoch's remainder, dropped at random
        mega = 50 * self.per_step
        order = [i for k in range(0, len(order), mega)
                 for i in sorted(order[k:k + mega], key=lambda j: -self.lengths[j])]
        steps = [order[k:k + self.per_step] for k in range(0, len(order), self.per_step)]
        rng.shuffle(steps)
        return [i for step in steps for i in step]


def collate(rows: list[dict], pad_id: int, packed: bool, padding_free: bool = False) -> dict:
    """Pad rows to the longest; packed rows carry position ids and no attention mask.

    ``padding_free`` (packed rows, attention that reads the position-id restarts: flash-attn
    varlen on GPU, sdpa_packed on CPU): the micro-batch becomes ONE row, its rows concatenated,
    so no padding is computed at all.
    """
    if packed and padding_free:
        rows = [{k: [x for r in rows for x in r[k]] for k in ("input_ids", "labels",
                                                              "position_ids")}]
    width = max(len(r["input_ids"]) for r in rows)
    out = {"input_ids": [], "labels": [], "position_ids": [], "attention_mask": []}
    for r in rows:
        n, pad = len(r["input_ids"]), width - len(r["input_ids"])
        out["input_ids"].append(list(r["input_ids"]) + [pad_id] * pad)
        out["labels"].append(list(r["labels"]) + [IGNORE] * pad)
        # padding forms its own segment (positions restart at 0), so no real token attends to it
        pos = list(r["position_ids"]) if packed else list(range(n))
        out["position_ids"].append(pos + list(range(pad)))
        out["attention_mask"].append([1] * n + [0] * pad)
    batch = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
    batch["n_tokens"] = int(batch["attention_mask"].sum())
    if packed:
        del batch["attention_mask"]
    return batch


class SolarDataModule(L.LightningDataModule):
    features = ROWS  # columns of a cached split (an absent split loads as an empty one)

    def __init__(self, sources: dict, tokenizer, *, world: str, cache_dir: str | os.PathLike,
                 objective: str = "sft", max_length: int = 2048, packing: bool = True,
                 micro_batch_size: int = 8, grad_accum: int = 1, val_fraction: float = 0.02,
                 seed: int = 0, group_by_length: bool = True, padding_free: bool = False):
        super().__init__()
        if not sources:
            raise ValueError("no data sources selected: set `data` (e.g. data=[alpaca_gpt4])")
        self.sources, self.tokenizer, self.world = sources, tokenizer, world
        self.cache_dir, self.objective = Path(cache_dir), objective
        self.max_length, self.packing = max_length, packing
        self.mbs, self.accum, self.val_fraction, self.seed = micro_batch_size, grad_accum, \
            val_fraction, seed
        self.group_by_length, self.padding_free = group_by_length, padding_free
        self.recipe = {
            "version": CACHE_VERSION, "sources": sources, "world": world, "objective": objective,
            "files": {name: files_fingerprint(name, spec, world, cache_dir)
                      for name, spec in sources.items()},
            "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": max_length,
            "packing": packing, "val_fraction": val_fraction, "seed": seed,
        }
        self.report: dict = {}
        self.encode_report: dict = {}  # what tokenization dropped or cut, for the report
        self._train_loader: StepLoader | None = None
        self._resume_step = 0

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / "tokenized" / recipe_hash(self.recipe)

    def setup(self, stage: str | None = None) -> None:
        if self.report:
            return
        if not (self.cache_path / "report.json").is_file():
            self._build()
        self.train_rows, self.val_rows = (
            datasets.load_from_disk(str(self.cache_path / key)) if (self.cache_path / key).exists()
            else datasets.Dataset.from_dict({k: [] for k in self.features}, features=self.features)
            for key in ("train", "val"))
        self.report = json.loads((self.cache_path / "report.json").read_text())

    def _build(self) -> None:
        parts, reports = [], {}
        for name, spec in self.sources.items():
            records, reports[name] = self.prepare_source(name, spec)
            parts.append(records)
        records = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        examples = self._encode(records)
        split = examples.train_test_split(test_size=self.val_fraction, seed=self.seed) \
            if self.val_fraction > 0 else {"train": examples, "test": examples.select([])}
        tmp = self.cache_path.with_name(f".{self.cache_path.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        report = {"sources": reports, "examples": len(examples), **self.encode_report}
        for key, part in (("train", split["train"]), ("val", split["test"])):
            rows, stats = self._rows(part)
            if len(rows):  # datasets cannot reload an empty saved dataset: absent = no rows
                rows.save_to_disk(str(tmp / key))
            report[key] = stats
        (tmp / "report.json").write_text(json.dumps({**report, "recipe": self.recipe}, indent=2))
        if not self.cache_path.exists():
            tmp.rename(self.cache_path)
        else:
            shutil.rmtree(tmp)

    def prepare_source(self, name: str, spec: dict) -> tuple[datasets.Dataset, dict]:
        return prepare_source(name, spec, self.world, self.cache_dir)

    def _encode(self, records: datasets.Dataset) -> datasets.Dataset:
        tok, n = self.tokenizer, self.max_length
        if self.objective == "cpt":
            def fn(batch):
                chunks = [c for t in batch["text"] for c in encode_text(t, tok, n)]
                return {"input_ids": [c["input_ids"] for c in chunks],
                        "labels": [c["labels"] for c in chunks]}
        else:
            def fn(batch):
                enc = [encode_chat(m, tok, n) for m in batch["messages"]]
                return {"input_ids": [e["input_ids"] for e in enc],
                        "labels": [e["labels"] for e in enc]}
        ds = records.map(fn, batched=True, remove_columns=records.column_names, desc="tokenize")
        ds = ds.filter(lambda r: any(x != IGNORE for x in r["labels"]), desc="drop no-target rows")
        if len(ds) == 0:
            raise EmptySourceError("every example lost its targets (prompts longer than "
                                   f"data.max_length={n}?)")
        return ds

    def _rows(self, examples: datasets.Dataset) -> tuple[datasets.Dataset, dict]:
        lengths = [len(x) for x in examples["input_ids"]]
        groups = pack(lengths, self.max_length) if self.packing else [[i] for i in
                                                                      range(len(lengths))]
        rows = datasets.Dataset.from_generator(
            _row_generator, gen_kwargs={"examples": examples, "groups": groups}, features=ROWS,
        ) if groups else datasets.Dataset.from_dict({k: [] for k in ROWS}, features=ROWS)
        tokens = sum(lengths)
        # share of non-pad tokens in the rows as the loader pads them (to max_length when packed)
        width = self.max_length if self.packing else max(lengths, default=1)
        return rows, {"examples": len(lengths), "rows": len(groups), "tokens": tokens,
                      "packing_efficiency": tokens / max(1, len(groups) * width)}

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def collate(self, rows: list[dict]) -> dict:
        return collate(rows, self.tokenizer.pad_token_id, self.packing, self.padding_free)

    def row_lengths(self) -> list[int] | None:
        """Lengths to group steps by; packed rows are all about max_length already."""
        return None if self.packing else [len(x) for x in self.train_rows["input_ids"]]

    def train_dataloader(self) -> StepLoader:
        rank, world = self._world()
        loader = StepLoader(self.train_rows, self.mbs, self.accum, self.seed, self.collate, rank,
                            world, self.row_lengths() if self.group_by_length else None)
        loader.start_step = self._resume_step
        self._train_loader = loader
        return loader

    def val_dataloader(self):
        """This rank's share of the val batches (the Trainer injects no sampler: every row is
        counted once over all ranks). Every rank runs as many batches, because under FSDP each
        forward all-gathers the layers with the other ranks: a rank one batch short repeats its
        first, marked ``repeat`` so that the objective runs it and does not count it."""
        rank, world = self._world()
        rows = [self.val_rows[i] for i in range(len(self.val_rows))]
        batches = [self.collate(rows[i:i + self.mbs]) for i in range(0, len(rows), self.mbs)]
        mine = batches[rank::world]
        if batches:
            mine += [{**batches[0], "repeat": True}] * (-(-len(batches) // world) - len(mine))
        return torch.utils.data.DataLoader(mine, batch_size=None)  # already collated

    # Resume: the loader's position is the number of optimizer steps already taken.
    def state_dict(self) -> dict:
        return {"global_step": self.trainer.global_step if self.trainer else 0}

    def load_state_dict(self, state: dict) -> None:
        self._resume_step = state.get("global_step", 0)
        if self._train_loader is not None:
            self._train_loader.start_step = self._resume_step


def _row_generator(examples: datasets.Dataset, groups: list[list[int]]):
    for group in groups:
        yield concat_row([examples[i] for i in group])
