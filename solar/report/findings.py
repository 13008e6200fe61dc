"""The paper's findings (experiments/paper_results.yaml, ``findings:``) checked on a set of numbers.

A finding is a sentence and the claims behind it, each ``"<column>: <run> <op> <run>"`` with op
``>``, ``<`` or ``~`` (within ``tolerance`` points). It is *reproduced* when every claim holds,
*not reproduced* when one fails, *not evaluated* while a number it needs is missing. The same code
checks the paper's own numbers (every finding must hold there: tests/test_report.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable

CLAIM = re.compile(r"^\s*(\w+)\s*:\s*(\w+)\s*([<>~])\s*(\w+)\s*$")
Lookup = Callable[[str, str], "float | None"]   # (run, column) -> points or None


@dataclass(frozen=True)
class Claim:
    column: str
    left: str
    op: str
    right: str

    def holds(self, a: float, b: float, tolerance: float) -> bool:
        # compare the numbers as the tables print them (2 decimals), so a reader can check by eye
        a, b = round(a, 2), round(b, 2)
        return {">": a > b, "<": a < b, "~": abs(a - b) <= tolerance}[self.op]


@dataclass(frozen=True)
class Finding:
    text: str
    status: str        # reproduced | not reproduced | not evaluated
    detail: str        # the numbers behind the status


def parse_claim(text: str) -> Claim:
    match = CLAIM.match(text)
    if not match:
        raise ValueError(f"bad claim {text!r}: write '<column>: <run> <op> <run>' with op >, < or ~")
    return Claim(*match.groups())


def check(findings: list[dict], lookup: Lookup, tolerance: float,
          titles: dict[str, str]) -> list[Finding]:
    out = []
    for finding in findings:
        claims = [parse_claim(c) for c in finding["claims"]]
        missing = sorted({run for c in claims for run in (c.left, c.right)
                          if lookup(run, c.column) is None})
        if missing:
            out.append(Finding(finding["text"], "not evaluated", f"needs {', '.join(missing)}"))
            continue
        failed, shown = [], []
        for c in claims:
            a, b = lookup(c.left, c.column), lookup(c.right, c.column)
            line = f"{titles.get(c.column, c.column)} {c.left} {a:.2f} {c.op} {c.right} {b:.2f}"
            (shown if c.holds(a, b, tolerance) else failed).append(line)
        if failed:
            out.append(Finding(finding["text"], "not reproduced", "fails: " + "; ".join(failed)))
        else:
            out.append(Finding(finding["text"], "reproduced", "; ".join(shown)))
    return out
