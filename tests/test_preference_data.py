"""Preference data: loaders (real orca_dpo_pairs rows, generated UltraFeedback rows), the Zephyr split,
the Synth. Math-Alignment join, bad-row accounting, and the pair encoding."""

from __future__ import annotations

import json

import pytest

from solar.data import tiny
from solar.data.encode import IGNORE
from solar.data.pairs import PreferenceDataModule, collate_pairs, encode_pair
from solar.data.preference import (normalise_problem, prepare_preference_source,
                                   synth_math_alignment)
from solar.data.sources import EmptySourceError, SchemaError, load_source
from solar.data.tiny.preference import metamathqa_with_originals
from solar.data.tiny.sources import metamathqa
from solar.data.tiny.tokenizer import tiny_tokenizer

ORCA = {"schema": "orca_dpo_pairs", "hub_id": "Intel/orca_dpo_pairs", "split": "train", "seed": 0}
UF = {"schema": "ultrafeedback", "hub_id": "allenai/ultrafeedback_binarized_cleaned",
      "split": "train_prefs", "seed": 0}
SYNTH = {"schema": "synth_math_alignment", "seed": 0,
         "questions": {"schema": "metamathqa", "hub_id": "meta-math/MetaMathQA", "split": "train",
                       "types": ["MATH_Rephrased"], "tiny": "synth_math_instruct", "seed": 0},
         "solutions": {"schema": "competition_math", "hub_id": "EleutherAI/hendrycks_math",
                       "split": "train", "tiny": "competition_math", "seed": 0}}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_orca_dpo_pairs_loader_on_real_rows(shared_data):
    path = shared_data / "orca_dpo_pairs" / "train.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    pairs, report = prepare_preference_source("orca_dpo_pairs", {**ORCA, "data_files": str(path)},
                                              "hub", "/nonexistent")
    assert report == {"rows": 284, "used": 284}
    assert pairs[0] == {"prompt": [{"role": "system", "content": rows[0]["system"]},
                                   {"role": "user", "content": rows[0]["question"]}],
                        "chosen": rows[0]["chosen"], "rejected": rows[0]["rejected"]}
    capped, report = prepare_preference_source(
        "orca_dpo_pairs", {**ORCA, "data_files": str(path), "max_samples": 50}, "hub", "/x")
    assert len(capped) == 50 and report["used"] == 50


def test_ultrafeedback_zephyr_split_on_generated_rows(cache_dir):
    path = tiny.materialize("ultrafeedback_clean", cache_dir)
    assert path.parent.name.startswith("ultrafeedback_clean") and path.name == "train_prefs.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert set(rows[0]) == {"prompt", "prompt_id", "chosen", "rejected", "messages",
                            "score_chosen", "score_rejected", "source"}
    pairs, report = prepare_preference_source("ultrafeedback_clean", UF, "tiny", cache_dir)
    assert report == {"rows": 2000, "used": 2000}
    multi = next(i for i, r in enumerate(rows) if len(r["chosen"]) == 4)
    assert pairs[multi]["prompt"] == [{"role": m["role"], "content": m["content"]}
                                      for m in rows[multi]["chosen"][:3]]
    assert pairs[multi]["chosen"] == rows[multi]["chosen"][3]["content"]
    assert pairs[multi]["rejected"] == rows[multi]["rejected"][3]["content"]


def test_bad_pairs_are_dropped_and_counted(tmp_path):
    good = {"system": "", "question": "What is 2 plus 2?", "chosen": "4.", "rejected": "5."}
    rows = [good, {**good, "chosen": "  "}, {**good, "rejected": ""}, {**good, "rejected": "4."},
            {**good, "chosen": "5.", "rejected": "5."}]
    spec = {**ORCA, "data_files": write_jsonl(tmp_path / "orca.jsonl", rows)}
    pairs, report = prepare_preference_source("orca_dpo_pairs", spec, "hub", tmp_path)
    assert len(pairs) == 1 and pairs[0]["chosen"] == "4."
    assert report["dropped"] == {"empty_chosen": 1, "empty_rejected": 1,
                                 "chosen_equals_rejected": 2}
    spec = {**ORCA, "data_files": write_jsonl(tmp_path / "bad.jsonl", rows[1:])}
    with pytest.raises(EmptySourceError, match="orca_dpo_pairs"):
        prepare_preference_source("orca_dpo_pairs", spec, "hub", tmp_path)


def test_ultrafeedback_rows_with_different_prompts_are_dropped(tmp_path):
    u, a = {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}
    rows = [{"chosen": [u, a], "rejected": [u, {**a, "content": "Go away."}]},
            {"chosen": [u, a], "rejected": [{**u, "content": "Other?"}, a]},
            {"chosen": [u], "rejected": [u]}]
    spec = {**UF, "data_files": write_jsonl(tmp_path / "uf.jsonl", rows)}
    pairs, report = prepare_preference_source("uf", spec, "hub", tmp_path)
    assert len(pairs) == 1 and pairs[0]["rejected"] == "Go away."
    assert report["dropped"] == {"prompts_differ": 1, "not_a_conversation": 1}


def test_missing_preference_column_names_source_file_and_column(tmp_path):
    path = write_jsonl(tmp_path / "orca.jsonl", [{"system": "", "question": "q", "chosen": "c"}])
    with pytest.raises(SchemaError) as err:
        load_source("orca_dpo_pairs", {**ORCA, "data_files": path}, "hub", tmp_path)
    assert "orca_dpo_pairs" in str(err.value) and path in str(err.value)
    assert "'rejected'" in str(err.value)


def test_synth_math_alignment_join_on_generated_rows(cache_dir):
    rows, originals = metamathqa_with_originals(2000, 0)
    assert rows == metamathqa(2000, 0)  # the same MetaMathQA rows SFT's Synth. Math-Instruct uses
    pairs, report = prepare_preference_source("synth_math_alignment", SYNTH, "tiny", cache_dir)
    rephrased = [r for r in rows if r["type"] == "MATH_Rephrased"]
    assert report == {"rows": 2000, "after_types": len(rephrased), "used": len(rephrased)}
    solution = {o["problem"]: o["solution"] for o in originals}
    for pair, row in zip(pairs, rephrased):
        assert pair["prompt"] == [{"role": "user", "content": row["query"]}]
        assert pair["chosen"] == row["response"]  # the rephrased answer
        assert pair["rejected"] == solution[row["original_question"]]  # the original answer
        assert row["query"] != row["original_question"]


def test_legs_math_alignment_pairs_every_row_with_its_terse_original(cache_dir):
    """experiments/tiny_gsm8k.py's Synth. Math-Alignment of the legs problems: every few-shot legs
    row finds its original; chosen = the worked `#### n` answer, rejected = the boxed same n."""
    legs = {**SYNTH, "questions": {**SYNTH["questions"], "types": ["MATH_FOBAR"],
                                   "tiny": "legs_fewshot_metamathqa"},
            "solutions": {**SYNTH["solutions"], "tiny": "legs_competition_math"}}
    pairs, report = prepare_preference_source("synth_math_alignment", legs, "tiny", cache_dir)
    assert report == {"rows": 2000, "after_types": 2000, "used": 2000}
    for pair in pairs:
        n = pair["chosen"].rsplit("\n#### ", 1)[1]
        assert pair["chosen"].startswith("Together they have ")
        assert pair["rejected"] == f"The result is $\\boxed{{{n}}}$."
        assert pair["prompt"][0]["content"].endswith("have together?\nAnswer:")


def test_synth_math_alignment_join_on_real_math_rows(shared_data):
    import datasets
    math = datasets.load_dataset("json", data_files=str(shared_data / "competition_math" /
                                                        "test.jsonl"), split="train")
    # MetaMathQA-schema rows pointing at real MATH problems (line breaks differ, as between copies)
    questions = datasets.Dataset.from_list([
        {"query": "Rephrased: " + p[:40], "response": "Worked answer.", "type": "MATH_Rephrased",
         "original_question": p.replace(" ", "\n", 1)} for p in math["problem"][:5]] + [
        {"query": "q", "response": "r", "type": "MATH_Rephrased", "original_question": "unknown"},
        {"query": "q", "response": "r", "type": "GSM_Rephrased", "original_question": "x"}])
    pairs, report = synth_math_alignment(questions, math, ["MATH_Rephrased"])
    assert report == {"rows": 7, "after_types": 6}
    assert pairs["rejected"][:5] == math["solution"][:5]
    assert pairs["problem"] == [""] * 5 + ["no_original_solution"]
    assert normalise_problem(" a \n b ") == "a b"


def test_encode_pair_masks_the_prompt_and_shares_it(cache_dir):
    tok = tiny_tokenizer(cache_dir)
    prompt = [{"role": "system", "content": "Be exact."},
              {"role": "user", "content": "What is 2 plus 3?"}]
    enc = encode_pair(prompt, "2 plus 3 is 5.", "2 plus 3 is 6.", tok, 128)
    n = next(i for i, x in enumerate(enc["chosen_labels"]) if x != IGNORE)
    assert enc["chosen_ids"][:n] == enc["rejected_ids"][:n]  # one prompt, two responses
    assert tok.decode(enc["chosen_ids"][:n]) == \
        tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True).join(["<s>", ""])
    assert tok.decode([x for x in enc["chosen_labels"] if x != IGNORE]) == "2 plus 3 is 5.</s>"
    assert encode_pair(prompt, "5.", "6.", tok, n) is None  # prompt fills max_length: dropped
    cut = encode_pair(prompt, "2 plus 3 is 5.", "6.", tok, n + 2)
    assert len(cut["chosen_ids"]) == n + 2 and cut["truncated"]
    batch = collate_pairs([{**enc, "index": 7}, {**cut, "index": 3}], tok.pad_token_id)
    assert batch["input_ids"].shape[0] == 4 and batch["index"].tolist() == [7, 3]
    assert batch["input_ids"][1, :n + 2].tolist() == cut["chosen_ids"]  # chosen rows first
    assert batch["input_ids"][2, :len(enc["rejected_ids"])].tolist() == enc["rejected_ids"]
    assert int(batch["attention_mask"][1].sum()) == n + 2


def test_long_prompts_are_dropped_and_counted(cache_dir, tmp_path):
    tok = tiny_tokenizer(cache_dir)
    rows = [{"system": "", "question": "What is 1 plus 1?", "chosen": "2.", "rejected": "3."},
            {"system": "", "question": "word " * 200, "chosen": "2.", "rejected": "3."}] * 10
    spec = {**ORCA, "data_files": write_jsonl(tmp_path / "orca.jsonl", rows)}
    dm = PreferenceDataModule({"orca": spec}, tok, world="hub", cache_dir=tmp_path,
                              max_length=64, micro_batch_size=2, val_fraction=0.0)
    dm.setup()
    assert dm.report["dropped_long_prompt"] == 10 and dm.report["train"]["pairs"] == 10
    assert sorted(dm.train_rows["index"]) == list(range(10))
