"""How every ``python -m solar.<entry>`` command starts, so all of them exit alike.

Exit codes: 0 done, 2 a user error (solar's own ``error: ...`` line, or a command line Hydra
cannot compose: unknown config option, misspelled key, bad override syntax), anything else a
crash. Hydra itself exits 1 for both a composition error and a crash of the task; scripts and the
experiment driver need to tell them apart. A new entry point gets the same behaviour with
``run_command(main, "<entry>")`` under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

from solar.runs import exit_if_other_entry

USER_ERROR = 2


def exit_user_error(err: Exception) -> NoReturn:
    """One ``error: ...`` line per problem (a ConfigError lists every one), then exit 2."""
    for line in getattr(err, "errors", None) or [err.args[0] if err.args else str(err)]:
        print(f"error: {line}", file=sys.stderr)
    sys.exit(USER_ERROR)


def raised_by_task(err: BaseException | None) -> bool:
    """Whether ``err`` came out of the task function, i.e. after composition succeeded: Hydra
    runs the task inside ``hydra.core.utils.run_job`` (the frame its own error report looks for)."""
    tb = err.__traceback__ if err is not None else None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "run_job" and "hydra" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


def run_command(main: Callable[[], None], entry: str) -> None:
    """Run the ``@hydra.main`` function ``main`` as solar.<entry>: an ablation of another entry
    point, or a config Hydra cannot compose, exits 2 (Hydra has printed its message by then)."""
    exit_if_other_entry(entry, sys.argv[1:])
    try:
        main()
    except SystemExit as stop:
        # Hydra reports an exception and calls sys.exit(1) while handling it: that exception is
        # the SystemExit's __context__. Not from the task: the command line did not compose.
        if stop.code == 1 and stop.__context__ is not None and \
                not raised_by_task(stop.__context__):
            sys.exit(USER_ERROR)
        raise
