"""The embedded tiny world: a small made-up universe a few-million-parameter model learns on a CPU.

Everything here is deterministic from a seed. Task families are chosen to be learnable by a tiny
model in minutes (closed vocabularies, short answers, one rule each), so training visibly moves
losses and benchmark scores; generators in ``sources.py`` (and the benchmark / preference
generators) render these families into each real dataset's hub schema.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORDS = [
    "cat", "dog", "sun", "map", "cup", "hat", "pen", "box", "key", "bus", "owl", "fox", "egg",
    "ant", "bee", "cow", "pig", "rat", "jam", "ink", "bird", "fish", "tree", "lamp", "door",
    "book", "moon", "star", "rain", "snow", "wind", "milk", "cake", "rock", "ship", "frog",
    "apple", "bread", "chair", "cloud", "grape", "horse", "lemon", "mouse", "river", "stone",
    "table", "tiger", "water", "zebra",
]
COLORS = ["red", "blue", "green", "yellow", "black", "white", "pink", "brown"]
CREATURES = [
    "zorp", "blick", "florn", "quib", "snark", "vemp", "glim", "trux", "plonk", "wibb", "dax",
    "mirl", "skee", "yoll", "brix", "narn", "pim", "gorb", "teel", "fusk",
]
PLACES = ["Velm", "Osk", "Tarra", "Quen", "Lumb", "Drasi", "Pell", "Korr"]
NAMES = ["Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gus", "Hana", "Ivo", "Jade"]
ITEMS = ["apples", "pens", "books", "stones", "cakes", "cups", "keys", "eggs"]


@dataclass(frozen=True)
class Fact:
    creature: str
    color: str
    home: str
    legs: int


def facts(seed: int = 1234) -> list[Fact]:
    """The world's fixed facts: every creature has one color, one home town and a number of legs."""
    rng = random.Random(seed)
    return [Fact(c, rng.choice(COLORS), rng.choice(PLACES), rng.choice([2, 4, 6, 8]))
            for c in CREATURES]


@dataclass(frozen=True)
class QA:
    """One item of a task family: a question, its answer, and a plausible wrong answer."""
    family: str
    question: str
    answer: str
    wrong: str


def _word_pair(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(WORDS, 2)
    return a, b


def make_qa(rng: random.Random, family: str | None = None, world: list[Fact] | None = None) -> QA:
    """Draw one question of ``family`` (or a random family)."""
    world = world or facts()
    family = family or rng.choice(FAMILIES)
    if family == "add":
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        wrong = a + b + rng.choice([-2, -1, 1, 2])
        return QA(family, f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.",
                  f"{a} plus {b} is {wrong}.")
    if family == "upper":
        w, other = _word_pair(rng)
        return QA(family, f"Write the word {w} in capital letters.", w.upper(), other.upper())
    if family == "reverse":
        w = rng.choice([x for x in WORDS if len(x) <= 4])
        return QA(family, f"Spell the word {w} backwards.", " ".join(reversed(w)),
                  " ".join(w))
    if family == "color":
        f, g = rng.sample(world, 2)
        wrong = g.color if g.color != f.color else COLORS[(COLORS.index(f.color) + 1) % 8]
        return QA(family, f"What color is the {f.creature}?", f"The {f.creature} is {f.color}.",
                  f"The {f.creature} is {wrong}.")
    if family == "home":
        f = rng.choice(world)
        wrong = PLACES[(PLACES.index(f.home) + 1) % len(PLACES)]
        return QA(family, f"Where does the {f.creature} live?",
                  f"The {f.creature} lives in {f.home}.", f"The {f.creature} lives in {wrong}.")
    if family == "legs":
        f = rng.choice(world)
        wrong = f.legs + 2 if f.legs < 8 else 2
        return QA(family, f"How many legs does a {f.creature} have?",
                  f"A {f.creature} has {f.legs} legs.", f"A {f.creature} has {wrong} legs.")
    raise KeyError(f"unknown tiny-world task family '{family}' (known: {FAMILIES})")


FAMILIES = ["add", "upper", "reverse", "color", "home", "legs"]


@dataclass(frozen=True)
class WordProblem:
    """A GSM8K/MATH-like arithmetic word problem with a worked solution."""
    question: str
    rephrased: str
    steps: str
    answer: int


def word_problem(rng: random.Random) -> WordProblem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 30), rng.randint(2, 30)
    if rng.random() < 0.5:
        total = a + b
        q = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
        r = f"If {name} starts with {a} {item} and receives {b} more, how many {item} are there?"
        steps = f"{name} has {a} + {b} = {total} {item}."
    else:
        a, b = max(a, b), min(a, b)
        total = a - b
        q = f"{name} has {a} {item} and gives away {b}. How many {item} are left?"
        r = f"After giving {b} of {a} {item} away, how many {item} does {name} keep?"
        steps = f"{name} keeps {a} - {b} = {total} {item}."
    return WordProblem(q, r, steps, total)


def legs_problem(rng: random.Random, world: list[Fact] | None = None) -> WordProblem:
    """A word problem over the world's facts whose answer needs no word of the question copied:
    the legs of two creatures, added (sums 4-16). Only for experiments/tiny_gsm8k.py, which
    measures that a tiny model learns these under GSM8K's 5-shot layout while it never learns to
    copy the apples problems' names and numbers."""
    f, g = rng.sample(world or facts(), 2)
    q = f"How many legs do a {f.creature} and a {g.creature} have together?"
    return WordProblem(q, q, f"Together they have {f.legs + g.legs} legs.", f.legs + g.legs)


def gsm8k_answer(wp: WordProblem) -> str:
    """The worked answer in GSM8K's layout: the steps, then ``#### <n>`` on its own line."""
    return f"{wp.steps}\n#### {wp.answer}"


def story_sentence(rng: random.Random, world: list[Fact] | None = None) -> str:
    """One sentence of plain text for the continued-pretraining corpus."""
    world = world or facts()
    f = rng.choice(world)
    kind = rng.randrange(4)
    if kind == 0:
        return f"The {f.creature} is {f.color} and lives in {f.home}."
    if kind == 1:
        return f"A {f.creature} has {f.legs} legs."
    if kind == 2:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        return f"{a} plus {b} is {a + b}."
    w = rng.choice(WORDS)
    return f"The word {w} has {len(w)} letters and in capitals it is {w.upper()}."
