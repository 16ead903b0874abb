"""One error tree for the whole tool, each error carrying the exit code it ends a run with.

The command line maps an error to its code in one place (harness.cli); everything below
it raises one of these, or a subclass, with a message that names what is wrong.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1       # errors over the limit, a server, worker or the lab failed
EXIT_BAD_INPUT = 2        # a broken scenario, bad arguments, missing privileges
EXIT_THRESHOLDS = 99      # the run completed but a threshold failed
EXIT_INTERRUPTED = 130    # Ctrl-C / SIGTERM: partial results kept, marked


class WirebenchError(Exception):
    """Base of every error the tool reports to its user (one line, then its exit code)."""
    exit_code = EXIT_RUN_FAILED
    label = "error"


class BadInput(WirebenchError):
    """What the user gave cannot be run: fix the input, not the machine."""
    exit_code = EXIT_BAD_INPUT
    label = "bad input"


class RunFailed(WirebenchError):
    """Something failed while running: a server, a worker, the network lab."""
    exit_code = EXIT_RUN_FAILED
    label = "run failed"


class Interrupted(WirebenchError):
    """The run was interrupted; what was measured so far is kept."""
    exit_code = EXIT_INTERRUPTED
    label = "interrupted"


def first_line(exc: BaseException) -> str:
    """An error in one line: its message's first line, or its type when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
