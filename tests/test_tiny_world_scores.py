"""The tiny world's benchmarks measure what its sources teach (README, "The embedded tiny world").

One short chain shared by the tests, in the paper's roles: tiny DUS -> 100 steps of CPT (the SFT
base at scale=tiny) -> SFT on Synth. Math-Instruct alone -> DPO on Synth. Math-Alignment. Each step
is checked against the benchmark or held-out data that measures what its source teaches:
- CPT on the corpus raises tiny ARC, HellaSwag, TruthfulQA mc2 and Winogrande (0-shot here: the
  few-shot prompts only cost time; the full leaderboard settings move the same way);
- SFT on Synth. Math-Instruct makes the worked answers of the tiny GSM8K problems more likely;
- DPO on the math pairs raises the chosen-over-rejected log-prob margin on held-out math pairs;
- Table 3's GSM8K effect, scored by lm-eval: after pretraining on legs pages, SFT with Synth.
  Math-Instruct keeps the 5-shot strict-match answers and SFT on Alpaca-GPT4 alone loses them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir

from solar.data.tiny.benchmarks import gsm8k, write_legs_gsm8k
from solar.data.tiny.preference import metamathqa_with_originals
from solar.eval.h6 import evaluate_h6
from solar.modeling import load_model, load_tokenizer
from solar.runs import CONF_DIR
from solar.train import train

TASKS = "[arc_challenge,hellaswag,truthfulqa_mc2,winogrande]"
ZERO_SHOT = "{arc_challenge:0,hellaswag:0,winogrande:0}"  # the few-shot prompts only cost time here
# nats per worked answer (summed log-prob): measured CPT -183.3 -> math SFT -61.2 (+122)
MATH_SFT_GAIN = 60.0
# nats per held-out pair, chosen - rejected: measured SFT 206.5 -> DPO 448.8 (+242)
MATH_DPO_GAIN = 100.0
LEGS_STEPS, LEGS_SFT_STEPS = 150, 60


def compose_tiny(runs, *overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[
            "scale=tiny", f"paths.runs={runs}", "logger=csv", *overrides])


@pytest.fixture(scope="module")
def chain(tmp_path_factory, cache_dir):
    """runs/tiny/{dus,cpt,math_sft,math_dpo}: the short chain every test here reads."""
    runs = tmp_path_factory.mktemp("chain") / "runs"
    up = subprocess.run([sys.executable, "-m", "solar.upscale", "scale=tiny", f"paths.runs={runs}",
                         "upscale.progress=false"], capture_output=True, text=True, cwd=runs.parent,
                        check=False)
    assert up.returncode == 0, up.stderr[-2000:]
    train(compose_tiny(runs, "+ablation=cpt", "trainer.max_steps=100",
                       "trainer.checkpoint_every_n_steps=100"))
    # Synth. Math-Instruct alone, from the CPT base (no model.pretrained: the solar_10_7b role)
    train(compose_tiny(runs, "+ablation=sft_v4", "data=[synth_math_instruct]", "run.name=math_sft",
                       "trainer.max_steps=80", "trainer.checkpoint_every_n_steps=80"))
    train(compose_tiny(runs, "+ablation=dpo_v2", "data=[synth_math_alignment]",
                       "model.pretrained=math_sft", "run.name=math_dpo", "trainer.max_steps=30",
                       "trainer.checkpoint_every_n_steps=30"))
    return runs / "tiny"


def test_cpt_raises_the_tiny_benchmark_scores(chain, tmp_path, cache_dir):
    cfg = compose_tiny(tmp_path, "eval=h6", f"eval.tasks={TASKS}", f"++eval.num_fewshot={ZERO_SHOT}")
    before, after = (evaluate_h6(str(chain / run / "model"), cfg.eval, tmp_path / run, "tiny",
                                 cache_dir)["scores"] for run in ("dus", "cpt"))
    print("tiny scores before / after CPT:", before, after)
    mean = lambda s: sum(s.values()) / len(s)
    assert mean(after) > mean(before) + 0.10   # 30-100 items per task: +10 points is above noise
    assert after["hellaswag"] > before["hellaswag"] and after["arc_challenge"] > \
        before["arc_challenge"]


def response_logp(model, tok, prompt: str, response: str) -> float:
    """Summed log-prob of ``response`` (+ EOS) after the chat-templated ``prompt``."""
    text = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                   add_generation_prompt=True, tokenize=False)
    p = tok(text, add_special_tokens=False).input_ids
    r = tok(response + tok.eos_token, add_special_tokens=False).input_ids
    ids = torch.tensor([p + r])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    return float(logp[len(p) - 1:].gather(1, targets[len(p) - 1:, None]).sum())


def test_math_sft_teaches_the_word_problems(chain, cache_dir):
    """The worked GSM8K test answers ("Ann has 3 + 4 = 7 apples.\\n#### 7") become far more likely
    after SFT on Synth. Math-Instruct than under its CPT base. (Not the lm-eval GSM8K score, which
    stays 0 for tiny SFT models: experiments/tiny_gsm8k.py and the README say where it is lost.)"""
    problems = gsm8k(20, 0)   # the tiny GSM8K test split
    mean_logp = {}
    for run in ("cpt", "math_sft"):
        model = load_model(str(chain / run / "model")).eval()
        tok = load_tokenizer(str(chain / run / "model"), cache_dir)
        mean_logp[run] = sum(response_logp(model, tok, p["question"], p["answer"])
                             for p in problems) / len(problems)
    print("mean log-prob of the worked GSM8K answers, CPT / math SFT:", mean_logp)
    assert mean_logp["math_sft"] > mean_logp["cpt"] + MATH_SFT_GAIN


def test_math_dpo_raises_the_heldout_margin(chain, cache_dir):
    """Held-out pairs (another seed of the generator): chosen = the worked, rephrased solution,
    rejected = the terse original one (Sec. 3, Synth. Math-Alignment)."""
    rows, originals = metamathqa_with_originals(120, seed=7)
    terse = {o["problem"]: o["solution"] for o in originals}
    pairs = [(r["query"], r["response"], terse[r["original_question"]]) for r in rows
             if r["type"] == "MATH_Rephrased"][:20]
    margins = {}
    for run in ("math_sft", "math_dpo"):
        model = load_model(str(chain / run / "model")).eval()
        tok = load_tokenizer(str(chain / run / "model"), cache_dir)
        margins[run] = sum(response_logp(model, tok, q, c) - response_logp(model, tok, q, r)
                           for q, c, r in pairs) / len(pairs)
    print("held-out chosen - rejected log-prob margin, SFT / DPO:", margins)
    assert margins["math_dpo"] > margins["math_sft"] + MATH_DPO_GAIN


def test_math_sft_keeps_the_gsm8k_answers_that_a_plain_sft_loses(chain, tmp_path, cache_dir):
    """Table 3's GSM8K effect by its mechanism, scored by lm-eval at the leaderboard's 5-shot
    strict-match on a GSM8K of the legs problems ("How many legs do a zorp and a blick have
    together?"; the tiny model cannot learn the apples problems, README). The chain's CPT base
    scores 0; pretrained on legs pages it answers them; from there, at lr 1e-4, SFT v4 with the
    few-shot legs rows as Synth. Math-Instruct keeps the answers, while SFT v1 (Alpaca-GPT4 only)
    states the sum and stops before `#### n`, as none of its rows ends that way.
    (experiments/tiny_gsm8k.py: the full-length runs, and the tiny default lr 1e-3 overwriting
    the skill in every SFT.)"""
    runs = chain.parent

    def fit(steps: int, *overrides: str) -> None:
        train(compose_tiny(runs, *overrides, f"trainer.max_steps={steps}",
                           f"trainer.checkpoint_every_n_steps={steps}"))

    fit(LEGS_STEPS, "+ablation=cpt", "model.pretrained=cpt", "run.name=cpt_legs",
        "++data.sources.cpt_corpus.tiny=legs_worksheets", "data.max_length=256",
        "data.micro_batch_size=8")
    for v, math_rows in ((1, []), (4, ["++data.sources.synth_math_instruct.tiny="
                                       "legs_fewshot_metamathqa"])):
        fit(LEGS_SFT_STEPS, f"+ablation=sft_v{v}", "model.pretrained=cpt_legs", *math_rows,
            f"run.name=legs_sft_v{v}", "data.max_length=256", "++objective.tiny.lr=1e-4")
    data_dir = write_legs_gsm8k(tmp_path / "legs_benchmarks")
    cfg = compose_tiny(tmp_path, "eval=h6", "eval.tasks=[gsm8k]", f"eval.data_dir={data_dir}")
    scores = {run: evaluate_h6(str(chain / run / "model"), cfg.eval, tmp_path / run, "tiny",
                               cache_dir)["scores"]["gsm8k"]
              for run in ("cpt", "cpt_legs", "legs_sft_v1", "legs_sft_v4")}
    print("legs GSM8K, 5-shot strict-match:", scores)
    assert scores["cpt"] == 0
    assert scores["cpt_legs"] >= 0.5 and scores["legs_sft_v4"] >= 0.5
    assert scores["legs_sft_v1"] <= 0.1
