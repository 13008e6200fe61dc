"""The n-gram decontamination filter drops planted benchmark overlaps and nothing else."""

from __future__ import annotations

import json

from solar.data.decontaminate import Decontaminator, benchmark_texts, filter_rows


def test_drops_planted_overlaps_only(shared_data):
    texts = benchmark_texts(shared_data)
    assert len(texts) > 1000   # questions and answers of all six evaluation sets
    deco = Decontaminator(texts, n=13)
    clean = [json.loads(x) for x in (shared_data / "alpaca_gpt4/train.jsonl").read_text()
             .splitlines()][:60]
    gsm = json.loads((shared_data / "gsm8k/test.jsonl").read_text().splitlines()[7])
    mmlu = next(r for r in map(json.loads, (shared_data / "mmlu/test.jsonl").read_text()
                                 .splitlines()) if len(r["question"].split()) >= 14)
    words = gsm["question"].split()
    planted = [  # case, punctuation and spacing differ from the benchmark text
        {"instruction": "Solve: " + gsm["question"].upper().replace(",", " ,"), "output": "42"},
        {"instruction": "Explain.", "output": "As asked:  " + " ".join(words[2:15]) + "!"},
        {"instruction": mmlu["question"] + " " + " / ".join(mmlu["choices"]), "output": "B"},
    ]
    near_miss = {"instruction": " ".join(words[:12]), "output": "a 12-word overlap is kept"}
    rows = clean[:30] + planted[:2] + [near_miss] + clean[30:] + planted[2:]
    kept, removed = filter_rows(rows, lambda r: f"{r['instruction']}\n{r['output']}", deco)
    assert removed == 3
    assert kept == clean[:30] + [near_miss] + clean[30:]


def test_subset_of_benchmarks_and_missing_file(shared_data, tmp_path):
    assert set(benchmark_texts(shared_data, ["winogrande"])) == {
        json.loads(x)["sentence"] for x in
        (shared_data / "winogrande/validation.jsonl").read_text().splitlines()}
    try:
        benchmark_texts(tmp_path, ["gsm8k"])
    except FileNotFoundError as err:
        assert "gsm8k/test.jsonl" in str(err)
    else:
        raise AssertionError("a missing benchmark file must raise")
