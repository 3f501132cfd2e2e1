"""The source view: which of torch's own Python functions ran, as ``path:line``.

The list is a map of where to put breakpoints: each function once, in the
order it was first entered, with how deep it sat among torch's frames and how
often it was called. Python 3.12 and newer offer ``sys.monitoring``, whose
events can be switched off per function (so code outside torch costs nothing
after its first call); older Pythons get a profile function.

A debugger traces the process through the same machinery. When one is
attached, this view is skipped rather than disturbing it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import CodeType, FrameType

from traces.tensors import is_tracer_at_work

# Torch runs this before every operator while a Python dispatch mode (the ops
# view's) is active, so it and what it calls belong to the tracer, not the scenario.
DISPATCH_MODE_LOOKUP = "find_torch_dispatch_rule"



@dataclass
class SourceEntry:
    function: str  # qualified name, e.g. "Tensor.backward"
    path: str  # absolute path of the file
    line: int  # the line where the function starts
    depth: int  # how many torch functions were below it on the stack when it was first entered
    calls: int

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


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
        self.entries: dict[CodeType, SourceEntry] = {}
        self._hidden: set[CodeType] = set()  # the dispatch-mode lookup and what it calls
        self.skipped: str | None = None  # why the view was not recorded
        self._stop = None

    def start(self) -> None:
        if debugger_active():
            self.skipped = "a debugger or tracer owns this process's tracing hook, so the source view was skipped"
            return
        monitoring = getattr(sys, "monitoring", None)
        if monitoring is None:
            self._start_profile()
        elif monitoring.get_tool(monitoring.PROFILER_ID) is None:
            self._start_monitoring(monitoring)
        else:
            self.skipped = "another profiler holds sys.monitoring's profiler slot, so the source view was skipped"

    def stop(self) -> None:
        """Remove the hook; safe to call more than once."""
        if self._stop is not None:
            self._stop()
            self._stop = None

    def _entered(self, code: CodeType, frame: FrameType) -> None:
        if is_tracer_at_work() or code in self._hidden:  # torch code run for the tracer
            return
        entry = self.entries.get(code)
        if entry is not None:
            entry.calls += 1
            return
        name = getattr(code, "co_qualname", code.co_name)  # co_qualname is new in 3.11
        hidden = name == DISPATCH_MODE_LOOKUP
        depth = 0  # torch functions below this one on the stack
        caller = frame.f_back
        while caller is not None:
            hidden = hidden or caller.f_code in self._hidden
            depth += caller.f_code.co_filename.startswith(self.package_dir)
            caller = caller.f_back
        if hidden:
            self._hidden.add(code)
            return
        self.entries[code] = SourceEntry(name, code.co_filename, code.co_firstlineno, depth, 1)

    def _start_profile(self) -> None:
        def profile(frame: FrameType, event: str, arg) -> None:
            if event == "call" and frame.f_code.co_filename.startswith(self.package_dir):
                self._entered(frame.f_code, frame)

        def stop() -> None:
            if sys.getprofile() is profile:
                sys.setprofile(None)

        sys.setprofile(profile)
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
