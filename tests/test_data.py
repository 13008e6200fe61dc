"""Loaders (real rows and generated rows), the Table 8 filter, the template mask and packing."""

from __future__ import annotations

import json

import pytest
import torch

from solar.data import tiny
from solar.data.datamodule import SolarDataModule, collate
from solar.data.encode import IGNORE, encode_chat
from solar.data.filters import table8_task
from solar.data.packing import concat_row, pack
from solar.data.sources import SchemaError, load_source, prepare_source, to_records
from solar.data.tiny.tokenizer import tiny_tokenizer
from solar.modeling import load_model

ALPACA = {"schema": "alpaca_gpt4", "hub_id": "vicgalle/alpaca-gpt4", "split": "train",
          "max_samples": 52000, "seed": 0}


def test_alpaca_loader_on_real_rows(shared_data):
    spec = {**ALPACA, "data_files": str(shared_data / "alpaca_gpt4" / "train.jsonl")}
    ds = load_source("alpaca_gpt4", spec, "hub", "/nonexistent")
    assert len(ds) == 300 and {"instruction", "input", "output", "text"} <= set(ds.column_names)
    _records, report = prepare_source("alpaca_gpt4", {**spec, "max_samples": 100}, "hub", "/x")
    assert report == {"rows": 300, "used": 100}
    first = json.loads((shared_data / "alpaca_gpt4" / "train.jsonl").read_text().splitlines()[0])
    full = to_records("alpaca_gpt4", ds)
    assert full[0]["messages"] == [{"role": "user", "content": first["instruction"]},
                                   {"role": "assistant", "content": first["output"]}]


def test_missing_column_names_source_file_and_column(tmp_path):
    bad = tmp_path / "alpaca.jsonl"
    bad.write_text(json.dumps({"instruction": "Say hi.", "input": ""}) + "\n")
    with pytest.raises(SchemaError) as err:
        load_source("alpaca_gpt4", {**ALPACA, "data_files": str(bad)}, "hub", tmp_path)
    assert "alpaca_gpt4" in str(err.value) and str(bad) in str(err.value)
    assert "'output'" in str(err.value) and "instruction" in str(err.value)


def test_generated_sources_are_deterministic_and_in_hub_schema(cache_dir):
    path = tiny.materialize("openorca", cache_dir)
    assert path == tiny.materialize("openorca", cache_dir)  # cached
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(rows[0]) == {"id", "system_prompt", "question", "response"}
    assert {r["id"].split(".")[0] for r in rows} == {"flan", "niv", "cot", "t0"}
    math = [json.loads(x) for x in tiny.materialize("synth_math_instruct", cache_dir)
            .read_text().splitlines()]
    assert set(math[0]) == {"query", "response", "type", "original_question"}
    assert {r["type"][:4] for r in math} == {"MATH", "GSM_"}


def test_generated_sources_and_benchmarks_are_cached_by_their_content(tmp_path, monkeypatch):
    """A changed generator gets a new cache folder; rows of the old one are never read."""
    from solar.data.tiny import benchmarks, sources

    old = tiny.materialize("openorca", tmp_path, n=20)
    old_bench = benchmarks.materialize_benchmarks(tmp_path)
    assert tiny.materialize("openorca", tmp_path, n=20) == old
    assert benchmarks.materialize_benchmarks(tmp_path) == old_bench

    def changed(n, seed):
        return [{**row, "response": row["response"] + "!"} for row in sources.openorca(n, seed)]
    monkeypatch.setitem(tiny.GENERATORS, "openorca", (changed, 2000, "train"))
    new = tiny.materialize("openorca", tmp_path, n=20)
    assert new != old and old.is_file()
    assert all(json.loads(x)["response"].endswith("!") for x in new.read_text().splitlines())

    arc = benchmarks.SPLITS["arc_challenge"]
    monkeypatch.setitem(benchmarks.SPLITS, "arc_challenge", {**arc, "test": (arc["test"][0], 7, 0)})
    new_bench = benchmarks.materialize_benchmarks(tmp_path)
    assert new_bench != old_bench
    assert len((new_bench / "arc_challenge" / "test.jsonl").read_text().splitlines()) == 7
    assert len((old_bench / "arc_challenge" / "test.jsonl").read_text().splitlines()) == arc["test"][1]


def test_table8_filter_drops_the_planted_task_rows_and_nothing_else(cache_dir):
    from collections import Counter

    from solar.data.tiny.sources import TABLE8_PLANTED, openorca_with_tasks

    spec = {"schema": "openorca", "hub_id": "Open-Orca/OpenOrca", "split": "train", "seed": 0,
            "drop_tasks": TABLE8_PLANTED}
    truth = Counter(task for _, task in openorca_with_tasks(2000, 0) if task)
    _, report = prepare_source("openorca", spec, "tiny", cache_dir)
    assert report["table8_dropped"] == dict(truth) and sum(truth.values()) > 150
    assert report["used"] == 2000 - sum(truth.values())
    assert table8_task({"id": "t0.1", "question": "What happens next in this paragraph?",
                        "system_prompt": ""}) is None  # wrong sub-mixture: kept
    assert table8_task({"id": "flan.1", "question": "What is 3 plus 4?", "system_prompt": ""}) is None


def test_prompt_tokens_never_contribute_to_the_loss(cache_dir):
    tok = tiny_tokenizer(cache_dir)
    msgs = [{"role": "system", "content": "Be short."},
            {"role": "user", "content": "What is 3 plus 4?"},
            {"role": "assistant", "content": "3 plus 4 is 7."}]
    ex = encode_chat(msgs, tok, 128)
    targets = [i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE]
    assert tok.decode(targets) == "3 plus 4 is 7.</s>"
    assert tok.decode(ex["input_ids"]) == "<s>" + tok.apply_chat_template(msgs, tokenize=False)
    # manual loss over response tokens only == the module's masked loss; prompt changes don't move it
    model = load_model(None, architecture=dict(hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4),
                       vocab_size=len(tok), seed=0)
    from solar.objectives.base import token_loss_sum

    def loss(example):
        batch = collate([{**example, "position_ids": list(range(len(example["input_ids"])))}],
                        tok.pad_token_id, packed=False)
        total, n = token_loss_sum(model, batch)
        return total / n, batch

    value, batch = loss(ex)
    logits = model(input_ids=batch["input_ids"]).logits[0]
    positions = [p for p, lab in enumerate(ex["labels"]) if lab != IGNORE]
    assert positions[-1] < len(ex["input_ids"]) - 1  # the template's blank line is no target
    manual = torch.stack([-torch.log_softmax(logits[p - 1], -1)[ex["input_ids"][p]]
                          for p in positions]).mean()
    assert torch.allclose(value, manual, atol=1e-6)
    other = encode_chat([{"role": "user", "content": "What is 3 plus 4?"}] + msgs[2:], tok, 128)
    assert [t for t, lab in zip(other["input_ids"], other["labels"]) if lab != IGNORE] == targets


def test_packing_is_best_fit_and_bounded():
    rows = pack([5, 3, 7, 2, 1, 8], 8)
    assert sorted(i for r in rows for i in r) == list(range(6))
    assert all(sum([5, 3, 7, 2, 1, 8][i] for i in r) <= 8 for r in rows)
    assert len(rows) == 4  # 36 tokens... 8 | 7+1 | 5+3 | 2 -> 4 rows
    with pytest.raises(ValueError, match="max_length"):
        pack([9], 8)


@pytest.mark.parametrize("attn", ["sdpa", "sdpa_packed"])  # dense block mask | per example
def test_packed_logits_equal_one_by_one(cache_dir, attn):
    tok = tiny_tokenizer(cache_dir)
    model = load_model(None, architecture=dict(hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
                       vocab_size=len(tok), seed=1, attn=attn).eval()
    texts = [("What is 2 plus 2?", "2 plus 2 is 4."), ("Spell the word cat backwards.", "t a c"),
             ("Where does the zorp live?", "The zorp lives in Velm.")]
    exs = [encode_chat([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                       tok, 128) for q, a in texts]
    row = collate([concat_row(exs)], tok.pad_token_id, packed=True)
    row_padded = collate([concat_row(exs), concat_row(exs[:1])], tok.pad_token_id, packed=True)
    with torch.no_grad():
        # use_cache=False: with a KV cache transformers skips the packed-sequence mask (as in training)
        packed = model(input_ids=row["input_ids"], position_ids=row["position_ids"],
                       use_cache=False).logits[0]
        padded = model(input_ids=row_padded["input_ids"],
                       position_ids=row_padded["position_ids"], use_cache=False).logits
        start = 0
        for ex in exs:
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            n = len(ex["input_ids"])
            torch.testing.assert_close(packed[start:start + n], alone, atol=1e-5, rtol=1e-5)
            start += n
        n0 = len(exs[0]["input_ids"])
        torch.testing.assert_close(padded[1, :n0], packed[:n0], atol=1e-5, rtol=1e-5)


def test_packed_sdpa_loss_and_gradients_equal_the_dense_mask(cache_dir):
    """The training path (micro-batch as one unpadded row, per-example sdpa, LM head on targets
    only) gives the loss and the gradients of padded rows with the dense block-diagonal mask and
    full logits (fp32, 1e-5)."""
    from solar.objectives.base import token_loss_sum
    tok = tiny_tokenizer(cache_dir)
    arch = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2)
    qs = ["What is 2 plus 2?", "Spell the word cat backwards.", "Where does the zorp live?",
          "What is 7 plus 1?"]
    exs = [encode_chat([{"role": "user", "content": q}, {"role": "assistant", "content": q[::-1]}],
                       tok, 128) for q in qs]
    batch = collate([concat_row(exs[:3]), concat_row(exs[3:])], tok.pad_token_id, packed=True)
    grads = []
    for attn in ("sdpa", "sdpa_packed"):
        model = load_model(None, architecture=arch, vocab_size=len(tok), seed=1, attn=attn)
        if attn == "sdpa":  # reference: full logits, the loss over every position
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                           use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=IGNORE,
                reduction="sum")
        else:  # the micro-batch as one row with no padding (padding_free), as training feeds it
            flat = collate([concat_row(exs[:3]), concat_row(exs[3:])], tok.pad_token_id,
                           packed=True, padding_free=True)
            assert flat["input_ids"].shape == (1, flat["n_tokens"]) == (1, batch["n_tokens"])
            loss, n = token_loss_sum(model, flat)
            assert n == int((batch["labels"][:, 1:] != IGNORE).sum())
        loss.backward()
        grads.append((float(loss.detach()), {k: p.grad for k, p in model.named_parameters()}))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for k, g in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][k], g, atol=1e-5, rtol=1e-4)


def test_tokenized_cache_is_reused(cache_dir):
    tok = tiny_tokenizer(cache_dir)
    spec = {**ALPACA, "max_samples": 64}
    dm = SolarDataModule({"alpaca_gpt4": spec}, tok, world="tiny", cache_dir=cache_dir,
                         max_length=128, micro_batch_size=4)
    dm.setup()
    eff = dm.report["train"]["packing_efficiency"]
    assert dm.report["examples"] == 64 and 0.5 < eff <= 1.0
    stamp = (dm.cache_path / "report.json").stat().st_mtime_ns
    dm2 = SolarDataModule({"alpaca_gpt4": spec}, tok, world="tiny", cache_dir=cache_dir,
                          max_length=128, micro_batch_size=4)
    dm2.setup()
    assert dm2.cache_path == dm.cache_path
    assert (dm.cache_path / "report.json").stat().st_mtime_ns == stamp
    assert dm2.train_rows["input_ids"] == dm.train_rows["input_ids"]


def test_tokenized_cache_is_rebuilt_when_the_rows_change(cache_dir, tmp_path, monkeypatch):
    """The cache is keyed by the source files too: a changed tiny generator or an edited local file
    is tokenized again, never served from the rows cached before the change (a session trained
    its DPO probes on stale pairs this way)."""
    from solar.data.tiny import sources

    tok = tiny_tokenizer(cache_dir)

    def module(spec):
        dm = SolarDataModule({"alpaca_gpt4": spec}, tok, world="tiny", cache_dir=tmp_path,
                             max_length=128, micro_batch_size=4, val_fraction=0.0)
        dm.setup()
        return dm

    def outputs(dm):  # the assistant tokens the rows train on
        return tok.decode([t for row in dm.train_rows["labels"] for t in row if t != IGNORE])

    spec = {**ALPACA, "max_samples": 32}
    before = module(spec)
    assert "ZEBRA!" not in outputs(before)

    def shouting(n, seed):
        return [{**row, "output": row["output"] + " ZEBRA!"} for row in sources.alpaca_gpt4(n, seed)]
    monkeypatch.setitem(tiny.GENERATORS, "alpaca_gpt4", (shouting, 2000, "train"))
    after = module(spec)
    assert after.cache_path != before.cache_path
    assert outputs(after).count("ZEBRA!") == 32

    local = tmp_path / "alpaca.jsonl"
    rows = sources.alpaca_gpt4(16, 0)
    local.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = module({**spec, "data_files": str(local)})
    local.write_text("".join(json.dumps({**r, "output": "MOUSE"}) + "\n" for r in rows))
    edited = module({**spec, "data_files": str(local)})
    assert edited.cache_path != first.cache_path
    assert "MOUSE" not in outputs(first) and outputs(edited).count("MOUSE") == 16


def test_every_rank_runs_as_many_val_batches_and_each_row_counts_once(cache_dir, monkeypatch):
    """Under FSDP every val forward is a collective: with 3 val batches over 2 ranks, rank 1 gets
    one batch and a repeat (marked, not counted); the counted batches hold each val row once."""
    tok = tiny_tokenizer(cache_dir)
    dm = SolarDataModule({"alpaca_gpt4": {**ALPACA, "max_samples": 400}}, tok, world="tiny",
                         cache_dir=cache_dir, max_length=128, packing=False, micro_batch_size=3)
    dm.setup()
    assert len(dm.val_rows) == 8  # 2% of 400: batches of 3, 3, 2
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(dm, "_world", lambda rank=rank: (rank, 2))
        shares.append(list(dm.val_dataloader()))
    assert [[bool(b.get("repeat")) for b in share] for share in shares] == [[False, False],
                                                                            [False, True]]
    counted = sorted(tuple(x for x in row if x != tok.pad_token_id)
                     for share in shares for b in share if not b.get("repeat")
                     for row in b["input_ids"].tolist())
    assert counted == sorted(tuple(r) for r in dm.val_rows["input_ids"])


def test_decontamination_in_a_source_config_drops_planted_benchmark_rows(cache_dir, tmp_path):
    from solar.data.tiny.benchmarks import materialize_benchmarks

    gsm = json.loads((materialize_benchmarks(cache_dir) / "gsm8k" / "test.jsonl")
                     .read_text().splitlines()[0])
    rows = [{"instruction": "Write the word cat in capital letters.", "input": "",
             "output": "CAT", "text": ""}] * 3
    rows.append({"instruction": gsm["question"], "input": "", "output": gsm["answer"], "text": ""})
    path = tmp_path / "mix.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {**ALPACA, "data_files": str(path), "decontaminate": {"n": 13}}
    if len(gsm["question"].split()) < 13:
        pytest.skip("generated GSM8K question shorter than one 13-gram")
    _records, report = prepare_source("alpaca_gpt4", spec, "tiny", cache_dir)
    assert report["decontaminated"] == 1 and report["used"] == 3


def test_group_by_length_steps_have_similar_lengths_and_cover_the_epoch():
    import datasets

    from solar.data.datamodule import StepLoader
    lengths = [(7 * i) % 97 + 1 for i in range(1000)]
    rows = datasets.Dataset.from_dict({"n": lengths})
    ids = lambda rs: [r["n"] for r in rs]  # collate = the rows' lengths
    grouped = StepLoader(rows, 4, 2, seed=0, collate_fn=ids, lengths=lengths)
    plain = StepLoader(rows, 4, 2, seed=0, collate_fn=ids)
    spread = lambda loader: sum(max(m) - min(m) for step in loader for m in step)
    steps = list(grouped)
    assert len(steps) == 125 and sorted(n for s in steps for m in s for n in m) == sorted(lengths)
    assert spread(StepLoader(rows, 4, 2, 0, ids, lengths=lengths)) * 5 < spread(plain)
    again = StepLoader(rows, 4, 2, seed=0, collate_fn=ids, lengths=lengths)
    again.start_step = 40  # a resumed run continues with exactly the same steps
    assert list(again) == steps[40:]


@pytest.mark.parametrize("kind", ["apples", "legs"])
def test_worksheet_pages_are_lm_evals_gsm8k_fewshot_layout_and_fit_a_256_token_row(cache_dir, kind):
    """Worksheet pages (experiments/tiny_gsm8k.py pretrains on them) are how a tiny base learns to
    read a 5-shot GSM8K prompt, so each page must be, block for block, what lm-eval renders for
    few-shot GSM8K docs (doc_to_text, target delimiter, doc_to_target, a blank line between), its
    `#### n` must be the result the steps compute (what strict-match reads), and a page must fit
    the experiment's 256-token rows (packing refuses longer examples). Both problem kinds: the
    apples problems and the legs problems (their `#### n` is the two creatures' legs added)."""
    import random
    import re
    from pathlib import Path

    import jinja2
    import lm_eval
    import yaml

    from solar.data.tiny.sources import worksheet
    from solar.data.tiny.world import facts, legs_problem, word_problem
    from solar.eval.tasks import BENCHMARKS

    cfg = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / BENCHMARKS["gsm8k"].builtin)
                         .read_text())
    text, target = (jinja2.Template(cfg[k]) for k in ("doc_to_text", "doc_to_target"))
    strict = cfg["filter_list"][0]["filter"][0]["regex_pattern"]
    tok = tiny_tokenizer(cache_dir)
    legs = {f.creature: f.legs for f in facts()}
    problem = {"apples": word_problem, "legs": legs_problem}[kind]
    for page in (worksheet(random.Random(i), problem) for i in range(50)):
        blocks = page.split("\n\n")
        assert 4 <= len(blocks) <= 6
        for block in blocks:
            q, a = re.fullmatch(r"Question: (.*)\nAnswer: (.*)", block, re.DOTALL).groups()
            doc = {"question": q, "answer": a}
            assert text.render(**doc) + " " + target.render(**doc) == block
            if kind == "apples":
                x, op, y, z = re.search(r"(\d+) ([+-]) (\d+) = (\d+)", a).groups()
                assert int(z) == (int(x) + int(y) if op == "+" else int(x) - int(y))
            else:
                f, g = re.fullmatch(r"How many legs do a (\w+) and a (\w+) have together\?", q).groups()
                z = str(legs[f] + legs[g])
            assert re.search(strict, a).group(1) == z
        assert len(tok(page).input_ids) + 1 <= 256   # + EOS
