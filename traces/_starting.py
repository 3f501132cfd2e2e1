"""Ctrl-C while ``python -m traces`` (or ``python -m traces.gdb``) is still starting: one line, status 130.

``python -m traces`` imports this package, and torch with it, before its own
``__main__`` runs: seconds in which Ctrl-C would print the traceback of an
import. Imported first by ``traces/__init__.py``, this module makes Ctrl-C in
that time end the program at once, in one line: nothing has been done yet.
``traces.__main__`` hands Ctrl-C back (``hand_back``) just before it runs the
script, which then meets Ctrl-C as it would under ``python SCRIPT``.

Imported any other way (``import traces`` in a program, the tests), it does nothing.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = 130  # the shell's status for a program ended by Ctrl-C (128 + SIGINT)


def say(line: str) -> None:
    """Print ``line`` on stderr in one write. print() writes the text and its newline
    apart, so when several processes share the terminal (ranks under torchrun,
    stopped by one Ctrl-C) two such lines could be mixed into one."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def command() -> str | None:
    """``python -m traces`` (or ``python -m traces.gdb``) while Python runs that command, else None."""
    argv = getattr(sys, "orig_argv", [])
    if "-m" not in argv[1:-1] or sys.argv[:1] not in (["-m"], []):  # runpy sets argv[0] once the package is in
        return None
    module = argv[argv.index("-m", 1) + 1]
    return f"python -m {module}" if module in ("traces", "traces.gdb") else None


def exit_at_once(signum, frame) -> None:
    say(f"{command() or 'python -m traces'}: interrupted (Ctrl-C) while starting; nothing was done")
    os._exit(INTERRUPTED)


def hand_back() -> None:
    """Let Ctrl-C raise KeyboardInterrupt again, if this module had taken it over."""
    if signal.getsignal(signal.SIGINT) is exit_at_once:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if command() is not None and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, exit_at_once)
