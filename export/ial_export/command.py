"""How the `ial` and `ial-deploy` commands talk to a shell: one error line, documented exit
statuses, a traceback only on request, a short word on Ctrl-C.

    0    done
    1    a failure (or, for ial-deploy and ial infer, some images were skipped)
    2    bad input: a missing or unreadable file, a bad option or setting value
    130  interrupted (Ctrl-C)

``--debug`` or IAL_DEBUG=1 adds the traceback. Torch-free: `ial_ext.cli` uses it too.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_VARIABLE = "IAL_DEBUG"
DEBUG_HELP = f"show the traceback of an error (or set {DEBUG_VARIABLE}=1)"


class UsageError(Exception):
    """Bad input that stops the command (exit status 2); the message names what was wrong."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during work that can be continued; `hint` says how."""

    def __init__(self, hint: str):
        super().__init__(hint)
        self.hint = hint


class CommandParser(argparse.ArgumentParser):
    """argparse without prefix matching (``--unary.iteration`` must not mean ``--unary.iterations``),
    and whose errors are one line, as the other errors of the command."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{command_name(self.prog)}: error: {message} (`{self.prog} --help` lists the options)\n")


def command_name(prog: str) -> str:
    """'ial' for 'ial train': the word error lines start with."""
    return prog.split()[0]


def debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def run_command(name: str, body: Callable[[], int], argv: Sequence[str],
                bad_input: tuple[type[BaseException], ...] = ()) -> int:
    """body()'s exit status; an exception becomes one line on stderr and status 2 when it is one
    of `bad_input` (or a UsageError), else 1; Ctrl-C becomes status 130."""
    debug = debug_requested(argv)
    try:
        return body()
    except KeyboardInterrupt as error:
        if debug:
            traceback.print_exc()
        hint = f"; {error.hint}" if isinstance(error, Interrupted) else ""
        print(f"\n{name}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # every error of the command ends here, as one line
        if debug:
            traceback.print_exc()
        if isinstance(error, (UsageError, *bad_input)):
            # Ours are one line, or a line and the list it announces (every bad file of a data set).
            print(f"{name}: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        # A library's message may run over many lines (torch's do): the first says what happened.
        message = (str(error).strip().splitlines() or [""])[0]
        advice = "" if debug else f" (--debug or {DEBUG_VARIABLE}=1 shows the traceback)"
        print(f"{name}: error: {type(error).__name__}: {message}{advice}", file=sys.stderr)
        return EXIT_FAILURE
