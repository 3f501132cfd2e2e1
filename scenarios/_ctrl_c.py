"""Ctrl-C while a scenario (or a benchmark) is still starting: one line and status 130, not a traceback.

A scenario spends its first seconds importing torch. Imported first of all by a
scenario run as a script, this module makes Ctrl-C in that time end the
program at once with one line: nothing has been done yet, so there is nothing
to clean up. ``run_scenario`` hands Ctrl-C back to Python before the lesson
starts; from then on it raises KeyboardInterrupt, the tracer removes its hooks,
a save in progress removes its temporary file, and the runner prints one line.

Imported any other way (by the tests, by a debugger's own machinery), or where
Ctrl-C is already handled by someone else, it does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

INTERRUPTED = 130  # the shell's status for a program ended by Ctrl-C (128 + SIGINT)


def say(line: str) -> None:
    """Print ``line`` on stderr in one write. print() writes the text and its newline
    apart, so when several processes share the terminal (the ranks of scenarios/ddp.py,
    stopped by one Ctrl-C) two such lines could be mixed into one."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


# The project's folders whose scripts take over Ctrl-C this way: the scenarios and the benchmarks.
SCRIPT_FOLDERS = ("scenarios", "benchmarks")


def script_name() -> str | None:
    """``scenarios/<file>`` (or ``benchmarks/<file>``) when the program was started as one of
    those scripts, else None."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    root = Path(__file__).resolve().parent.parent
    if path and Path(path).resolve().parent in [root / folder for folder in SCRIPT_FOLDERS]:
        return f"{Path(path).resolve().parent.name}/{Path(path).name}"
    return None


def exit_at_once(signum, frame) -> None:
    say(f"{script_name()}: interrupted (Ctrl-C) while starting; nothing was done")
    os._exit(INTERRUPTED)


def hand_back() -> None:
    """Let Ctrl-C raise KeyboardInterrupt again, if this module had taken it over."""
    if signal.getsignal(signal.SIGINT) is exit_at_once:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if script_name() is not None and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, exit_at_once)
