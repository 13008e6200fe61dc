"""How every ``python -m solar.<entry>`` command starts, so all of them exit alike.

Exit codes: 0 done, 2 a user error (solar's own ``error: ...`` line, or a command line Hydra
cannot compose: unknown config option, misspelled key, bad override syntax), anything else a
crash. Hydra itself exits 1 for both a composition error and a crash of the task; scripts and the
experiment driver need to tell them apart. A new entry point gets the same behaviour with
``run_command(main, "<entry>")`` under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from solar.runs import exit_if_other_entry

USER_ERROR = 2


def exit_user_error(err: Exception) -> NoReturn:
    """One ``error: ...`` line per problem (a ConfigError lists every one), then exit 2."""
    for line in getattr(err, "errors", None) or [err.args[0] if err.args else str(err)]:
        print(f"error: {line}", file=sys.stderr)
    sys.exit(USER_ERROR)


def _codes(tb):
    while tb is not None:
        yield tb.tb_frame.f_code
        tb = tb.tb_next


def _hydra(code, function: str) -> bool:
    return code.co_name == function and f"{os.sep}hydra{os.sep}" in code.co_filename


def composition_error(stop: SystemExit) -> bool:
    """Whether ``stop`` is Hydra reporting an error that did not come out of the task function.

    Hydra's ``run_and_report`` prints an exception and calls sys.exit(1) while handling it (that
    exception is the SystemExit's ``__context__``); the task runs inside ``run_job``, so an
    exception that never passed through ``run_job`` is Hydra's own: the command line did not
    compose. A task's own sys.exit is left alone.
    """
    if stop.code != 1 or stop.__context__ is None:
        return False
    raised_at = list(_codes(stop.__traceback__))
    if not raised_at or not _hydra(raised_at[-1], "run_and_report"):
        return False
    return not any(_hydra(c, "run_job") for c in _codes(stop.__context__.__traceback__))


def run_command(main: Callable[[], None], entry: str) -> None:
    """Run the ``@hydra.main`` function ``main`` as solar.<entry>: an ablation of another entry
    point, or a config Hydra cannot compose, exits 2 (Hydra has printed its message by then)."""
    exit_if_other_entry(entry, sys.argv[1:])
    try:
        main()
    except SystemExit as stop:
        if composition_error(stop):
            sys.exit(USER_ERROR)
        raise
