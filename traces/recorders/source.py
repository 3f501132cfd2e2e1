"""The source view: which of torch's own Python functions ran, as ``path:line``.

The list is a map of where to put breakpoints: each function once, in the
order it was first entered, with how deep it sat among torch's frames and how
often it was called. What runs while a module is being imported (``import
torchvision`` calls hundreds of torch functions) is left out, and so is what
``torch.compile`` runs inside: the view shows where the code enters it. Python 3.12 and newer offer ``sys.monitoring``, whose
events can be switched off per function (so code outside torch costs nothing
after its first call); older Pythons get a trace function (``sys.settrace``).

A debugger traces the process through the same machinery. When one is
attached, this view is skipped rather than disturbing it.
"""

from __future__ import annotations

import os
import sys
from types import CodeType, FrameType

from traces.basics.places import importing_now
from traces.data.tensors import is_tracer_at_work
from traces.data.trace import SourceEntry
from traces.recorders.modules import is_compiling

# Torch runs this before every operator while a Python dispatch mode (the ops
# view's) is active, so it and what it calls belong to the tracer, not the scenario.
DISPATCH_MODE_LOOKUP = "find_torch_dispatch_rule"

# The module hooks ask torch.compiler.is_compiling() before anything else, outside
# tracer_at_work (torch.compile must see them step aside): not the code's call.
COMPILE_CHECK = is_compiling.__code__

# The file name of Python's import system, whose frames are on the stack while a module is imported.
IMPORT_MACHINERY = "<frozen importlib._bootstrap>"

# torch.compile's machinery, relative to torch's folder: the view shows where the code enters
# it (OptimizedModule.__call__, CompiledFunction.backward), not the thousands of functions
# it runs to compile and to run what it compiled.
COMPILER_PARTS = (
    "_dynamo", "_inductor", "_functorch", "fx", "_subclasses", "_export", "export", "_higher_order_ops",
    "_prims", "_prims_common", "_decomp", "_refs", "_logging", "_guards.py", "utils/_sympy",
)  # fmt: skip



def compiling_now() -> bool:
    """Whether torch.compile is compiling on this thread (a cheap check, before walking the stack)."""
    guards = sys.modules.get("torch._guards")
    tls = getattr(guards, "_TLS", None)
    return getattr(tls, "compile_context", None) is not None


def building_a_module(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an ``nn.Module``'s ``__init__``: building a model, not running it."""
    from torch.nn import Module

    while frame is not None:
        if frame.f_code.co_name == "__init__" and isinstance(frame.f_locals.get("self"), Module):
            return True
        frame = frame.f_back
    return False


def debugger_active() -> bool:
    """Whether something already traces this process (a debugger, a coverage tool)."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and monitoring.get_tool(monitoring.DEBUGGER_ID) is not None


class SourceRecorder:
    """Records the functions entered whose files lie under ``package_dir``."""

    def __init__(self, package_dir: str) -> None:
        self.package_dir = os.path.abspath(package_dir) + os.sep
        self.compiler_files = tuple(os.path.join(self.package_dir, part) for part in COMPILER_PARTS)
        self.entries: dict[CodeType, SourceEntry] = {}
        self._hidden: set[CodeType] = set()  # the dispatch-mode lookup and what it calls
        self._compiler_insides: set[CodeType] = set()  # torch.compile's functions, below its entry
        self.skipped: str | None = None  # why the view was not recorded
        self._stop = None

    def start(self, running: FrameType | None = None) -> None:
        """Start noting the functions entered from now on; with ``running``, the innermost frame
        of a stack already running, note the torch functions on it first, as entered."""
        if debugger_active():
            self.skipped = "a debugger or tracer owns this process's tracing hook, so the source view was skipped"
            return
        monitoring = getattr(sys, "monitoring", None)
        if monitoring is None:
            self._start_tracing()
        elif monitoring.get_tool(monitoring.PROFILER_ID) is None:
            self._start_monitoring(monitoring)
        else:
            self.skipped = "another profiler holds sys.monitoring's profiler slot, so the source view was skipped"
            return
        frames = []
        while running is not None:
            frames.append(running)
            running = running.f_back
        for frame in reversed(frames):  # the outermost first, as they were entered
            if frame.f_code.co_filename.startswith(self.package_dir):
                self._entered(frame.f_code, frame)

    def stop(self) -> None:
        """Remove the hook; safe to call more than once."""
        if self._stop is not None:
            self._stop()
            self._stop = None

    def _entered(self, code: CodeType, frame: FrameType) -> None:
        if is_tracer_at_work() or frame.f_back is not None and frame.f_back.f_code is COMPILE_CHECK:
            return  # torch code run for the tracer
        entry = self.entries.get(code)
        if entry is not None:
            entry.calls += 1
            if entry.building:  # until it is entered once outside a module's __init__
                entry.building = building_a_module(frame)
            return
        if code in self._hidden or code in self._compiler_insides or compiling_now() or importing_now():
            return
        # The first entry: how deep among torch's frames, and whether it runs for the
        # tracer (below the dispatch-mode lookup) or for an import.
        name = getattr(code, "co_qualname", code.co_name)  # co_qualname is new in 3.11
        hidden = name == DISPATCH_MODE_LOOKUP
        importing = compiling = False
        depth = 0  # torch functions below this one on the stack
        caller = frame.f_back
        while caller is not None:
            caller_code = caller.f_code
            filename = caller_code.co_filename
            hidden = hidden or caller_code in self._hidden
            importing = importing or filename == IMPORT_MACHINERY
            compiling = compiling or filename.startswith(self.compiler_files)
            depth += filename.startswith(self.package_dir)
            caller = caller.f_back
        if hidden:
            self._hidden.add(code)  # the tracer's own work, and all it calls: never the code's
            return
        if compiling and code.co_filename.startswith(self.compiler_files):
            self._compiler_insides.add(code)  # torch.compile's insides: never the code's
            return
        if importing or compiling:  # run by an import, or by torch.compile: not noted, and not
            return  # remembered either, since the same function may run again, for the code being traced
        self.entries[code] = SourceEntry(name, code.co_filename, code.co_firstlineno, depth, 1, building_a_module(frame))

    def _start_tracing(self) -> None:
        """Before Python 3.12: a trace function, called once as each function starts (a profile
        function would also be called as each one returns, and around every call of a C function)."""

        def trace(frame: FrameType, event: str, arg) -> None:
            if event == "call" and frame.f_code.co_filename.startswith(self.package_dir):
                self._entered(frame.f_code, frame)
            # Returns None: no line-by-line tracing inside the function.

        def stop() -> None:
            if sys.gettrace() is trace:
                sys.settrace(None)

        trace.paused_while_tracer_works = True  # see traces.data.tensors.tracer_at_work
        sys.settrace(trace)
        self._stop = stop

    def _start_monitoring(self, monitoring) -> None:
        tool = monitoring.PROFILER_ID

        def started(code: CodeType, offset: int):
            if not code.co_filename.startswith(self.package_dir):
                return monitoring.DISABLE  # never report this function again
            self._entered(code, sys._getframe(1))

        def stop() -> None:
            monitoring.set_events(tool, 0)
            monitoring.register_callback(tool, monitoring.events.PY_START, None)
            monitoring.free_tool_id(tool)
            monitoring.restart_events()  # undo the DISABLEs, for whoever monitors next

        monitoring.use_tool_id(tool, "torch-stepthrough source view")
        monitoring.register_callback(tool, monitoring.events.PY_START, started)
        monitoring.set_events(tool, monitoring.events.PY_START)
        self._stop = stop
