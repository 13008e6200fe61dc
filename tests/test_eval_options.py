"""Evaluation and contamination options are checked before any model loads: the cases in
eval_options_cases.py, run in a pytest process of their own. They run the entry points in-process
(to spy on the model loader), and earlier in-process Hydra / lm-eval runs of a long session leave
logging bound to the closed capture files of finished tests, which takes the process down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_option_checks_fail_before_the_model_loads():
    cases = Path(__file__).with_name("eval_options_cases.py")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(cases)], capture_output=True, text=True, cwd=cases.parent.parent)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout
