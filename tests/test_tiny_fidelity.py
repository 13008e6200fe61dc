"""experiments/tiny_fidelity.py's rule for a finding, on hand-made scores of two seeds: A > B holds
only when A - B exceeds the seed-to-seed spread of A and of B on every seed."""

from __future__ import annotations

import importlib.util

from solar.runs import CONF_DIR

spec = importlib.util.spec_from_file_location(
    "tiny_fidelity", CONF_DIR.parent / "experiments" / "tiny_fidelity.py")
fidelity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fidelity)


def seeds(**runs):
    """run=(seed-1 score, seed-2 score) -> the per-seed score dicts the script reads."""
    return [{run: {"h6": v[i], "gsm8k": 0.0} for run, v in runs.items()} for i in range(2)]


def test_a_gain_counts_only_beyond_the_seed_spread():
    ok, text = fidelity.compare(seeds(a=(50.0, 54.0), b=(30.0, 31.0)), "a", "b", "h6")
    assert ok and text == "a > b on h6: 50.0 vs 30.0 / 54.0 vs 31.0 (spread 4.0)"
    # +2 and +5 on the two seeds, but a alone moves 4 points between seeds
    assert not fidelity.compare(seeds(a=(50.0, 54.0), b=(48.0, 49.0)), "a", "b", "h6")[0]
    assert not fidelity.compare(seeds(a=(50.0, 50.0), b=(50.0, 50.0)), "a", "b", "h6")[0]


def test_at_least_as_good_needs_every_seed():
    assert fidelity.compare(seeds(a=(1.0, 3.0), b=(1.0, 2.0)), "a", "b", "h6", strict=False)[0]
    assert not fidelity.compare(seeds(a=(1.0, 2.0), b=(1.0, 3.0)), "a", "b", "h6",
                                strict=False)[0]


def test_merges_are_held_against_the_weaker_candidate_of_each_seed():
    scores = seeds(dus=(20, 20), cpt=(40, 40), cand_1=(45, 60), cand_2=(50, 55),
                   merge_v1=(46, 56), merge_v2=(46, 54), merge_v3=(50, 60), merge_v4=(45, 55),
                   **{r: (40, 40) for r in ("sft_v1", "sft_v2", "sft_v3", "sft_v4", "sft_v3_v4",
                                            "dpo_v1", "dpo_v2")})
    for s in scores:   # the columns (d) reads
        for run in s.values():
            run.update(arc_challenge=0.0, hellaswag=0.0, truthfulqa_mc2=0.0)
    found = {label[:3]: holds for label, holds, _ in fidelity.findings(scores)}
    assert found["(a)"] and not found["(b)"]
    # weaker candidate: cand_1 (45) on seed 1, cand_2 (55) on seed 2; merge_v2 has 54 < 55
    assert not found["(h)"]
    scores[1]["merge_v2"]["h6"] = 55
    assert {label[:3]: h for label, h, _ in fidelity.findings(scores)}["(h)"]
