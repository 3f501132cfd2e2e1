"""What the extension changes in how a debugged process talks and steps.

Fast answers: debugpy's engine (pydevd) talks to the debug adapter over one TCP
socket per process and leaves Nagle's algorithm on, so every reply written in
pieces waits for the adapter's delayed acknowledgement, about 40 ms for each
request VSCode sends while paused. ``answer_at_once`` wraps
``PyDB.initialize_network``, which receives that socket whenever a process
connects (the program, a forked or spawned subprocess, an attach), and sets
TCP_NODELAY on it first. ``STEPTHROUGH_KEEP_NAGLE=1`` leaves Nagle on.

Stepping past the tracer: ``--trace`` (and ``python -m traces``) runs a dispatch
mode and hooks; under F11 their Python would be entered at every operator.
``step_past_tracer`` sets pydevd's ``should_trace_hook`` (the knob behind its
``@DontTrace`` comments): a stepping stop is skipped in the ``traces`` package,
in what the tracer calls, and in torch's lookup of the rule for a ``traces``
dispatch mode (``find_torch_dispatch_rule``), which torch runs only because that
mode is on. Breakpoints are not affected.

Nothing here imports torch or ``traces``; every function leaves pydevd as it
was when anything is not as expected.
"""

from __future__ import annotations

import os
import socket
import sys
import sysconfig
from pathlib import Path

# Set to 1 in the environment: the whole extension stays off (stock debugpy, to compare).
STOCK_VARIABLE = "STEPTHROUGH_STOCK_DEBUGGER"
# Set to 1: everything but TCP_NODELAY.
KEEP_NAGLE_VARIABLE = "STEPTHROUGH_KEEP_NAGLE"

# The tracing library that ships next to this extension (site-packages/traces, or the
# project's traces/ for an editable install).
_INSTALLED_IN = Path(__file__).parents[2]
TRACES_DIRS = tuple({str(root / "traces") + os.sep for root in (_INSTALLED_IN, _INSTALLED_IN.resolve())})
# The one file of traces/ written to be stepped through (traces/mirror/engine.py), not machinery: the autograd
# engine in Python (F11 from engine.backward(...) or, under --engine python, loss.backward()).
STEPPED_THROUGH = tuple(os.path.join(folder + "mirror", "engine.py") for folder in TRACES_DIRS)
# The function torch's dispatcher calls to find how a dispatch mode handles an operator.
DISPATCH_RULE_LOOKUP = ("find_torch_dispatch_rule", os.path.join("torch", "_library", "simple_registry.py"))


def turned_on(variable: str) -> bool:
    return os.environ.get(variable, "") not in ("", "0")


# -- TCP_NODELAY ---------------------------------------------------------------------------


def set_nodelay(sock) -> bool:
    """Turn Nagle's algorithm off on a TCP socket; False (and nothing changed) for anything else."""
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
        return False
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or turned_on(KEEP_NAGLE_VARIABLE):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return False  # a closed socket: nothing to speed up
    return True


def answer_at_once(py_db_class) -> None:
    """Make every connection ``py_db_class`` (pydevd's PyDB) starts set TCP_NODELAY first."""
    original = py_db_class.initialize_network
    if getattr(original, "sets_nodelay", False):
        return

    def initialize_network(self, sock, *args, **kwargs):
        try:
            set_nodelay(sock)
        except Exception:
            pass  # never stand between the program and its debugger
        return original(self, sock, *args, **kwargs)

    initialize_network.sets_nodelay = True
    initialize_network.__wrapped__ = original
    py_db_class.initialize_network = initialize_network


# -- stepping ---------------------------------------------------------------------------------


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    return tuple(str(Path(root).resolve()) + os.sep for root in roots)


LIBRARY_ROOTS = _library_roots()


def in_traces(filename: str) -> bool:
    return filename.startswith(TRACES_DIRS) and filename not in STEPPED_THROUGH


def is_library(filename: str) -> bool:
    """torch, the standard library, any installed package, or code Python made (``<string>``)."""
    return filename.startswith(("<", *LIBRARY_ROOTS)) or f"{os.sep}site-packages{os.sep}" in filename


def is_dispatch_rule_lookup_for_tracer(frame) -> bool:
    code = frame.f_code
    if code.co_name != DISPATCH_RULE_LOOKUP[0] or not code.co_filename.endswith(DISPATCH_RULE_LOOKUP[1]):
        return False
    mode_class = frame.f_locals.get("torch_dispatch_class")
    module = sys.modules.get(getattr(mode_class, "__module__", ""))
    return in_traces(getattr(module, "__file__", None) or "")


def passes_the_call_on(frame, callee) -> bool:
    """Whether a tracer frame only passes the program's call on to torch (the backward watch
    of ``python -m traces``, around ``torch.autograd.backward``), and ``callee``, the frame
    it called, is that call: its module names such functions in ``PASSES_CALLS_ON``, and
    ``callee`` runs a function the frame holds (``original``), or more of the tracer.
    Whatever else it calls on the way (contextlib's ``__enter__`` and ``__exit__`` for its
    ``with`` around the call) is machinery."""
    if frame.f_code.co_name not in frame.f_globals.get("PASSES_CALLS_ON", ()):
        return False
    if in_traces(callee.f_code.co_filename):
        return True
    return any(getattr(value, "__code__", None) is callee.f_code for value in frame.f_locals.values())


def is_tracer_machinery(frame) -> bool:
    """Whether a frame runs only because the tracer is on.

    It is: the tracer's own code; anything the tracer called (its callers, back to
    the first frame outside torch, the standard library and installed packages,
    include a ``traces`` frame that does more than pass the program's call on);
    torch's rule lookup for a ``traces`` dispatch mode. The program's own code and
    what it calls are never machinery, even when ``python -m traces`` started the program.
    """
    callee = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if is_dispatch_rule_lookup_for_tracer(frame):
            return True
        if in_traces(filename):
            if callee is None or not passes_the_call_on(frame, callee):
                return True
        elif not is_library(filename):
            return False  # the program's own code
        callee = frame
        frame = frame.f_back
    return False


def _frame_running(code, depth: int = 2, search: int = 12):
    """The frame of ``code`` that pydevd is asking about: the nearest one on this thread's stack."""
    frame = sys._getframe(depth)
    for _ in range(search):
        if frame is None:
            return None
        if frame.f_code is code:
            return frame
        frame = frame.f_back
    return None


def step_past_tracer(dont_trace_module, per_frame: bool) -> None:
    """Set pydevd's ``should_trace_hook`` so that stepping never stops in tracer machinery.

    ``per_frame``: pydevd asks once per frame (sys.settrace, Python 3.11 and older),
    so the answer may depend on who called; otherwise (sys.monitoring) it asks once
    per function and keeps the answer, so only the ``traces`` package is skipped.
    """
    previous = dont_trace_module.should_trace_hook

    def should_trace_hook(code, filename: str) -> bool:
        if previous is not None and not previous(code, filename):
            return False
        try:
            if in_traces(code.co_filename):
                return False
            if not per_frame:
                return True
            frame = _frame_running(code)
            return frame is None or not is_tracer_machinery(frame)
        except Exception:
            return True  # when in doubt, step as debugpy does

    dont_trace_module.should_trace_hook = should_trace_hook
