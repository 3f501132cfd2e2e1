"""The plain data of one run: the ``Trace`` and the records it holds.

A ``Trace`` is what the recorders (``traces.recorders.tracer``) produce and what every
renderer reads: the autograd graph, the backward steps, the ATen calls, the torch
functions entered, and the kernels below them. Nothing here records or draws:
how a trace is shown and saved is plugged in by the package's face
(``traces/__init__.py``), so this floor never imports the renderers above it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from traces.below.dispatcher import OpKernel
from traces.data.graph import AutogradGraph
from traces.data.tensors import TensorSummary

if TYPE_CHECKING:
    from rich.console import Console

SCHEMA_VERSION = 6  # see traces/render/json_file.py
VIEWS = ("graph", "backward", "ops", "source")
NATIVE_NOT_ASKED = "not asked for (--native, or Tracer(native=True))"


@dataclass
class BackwardStep:
    order: int  # 0 for the first node the engine ran
    node: str  # the node's id in the graph
    name: str
    arriving: list[TensorSummary | None]  # gradients w.r.t. the node's outputs, after any tensor hooks
    leaving: list[TensorSummary | None] = field(default_factory=list)  # one per edge slot
    # Per arriving gradient: what was sent, before tensor hooks changed it; None where no hook changed it.
    before_hooks: list[TensorSummary | None] = field(default_factory=list)
    # Nanoseconds the node itself ran: wall time from the end of its pre-hook to the start of its
    # hook (time.perf_counter_ns), so the tracer's own summarising is not counted. None where the
    # engine ran no hook after it (an error inside the node).
    time_ns: int | None = None


@dataclass
class BackwardRecording:
    graph: AutogradGraph
    steps: list[BackwardStep] = field(default_factory=list)


@dataclass
class TensorMeta:
    shape: list[int]
    dtype: str

    def __str__(self) -> str:
        return f"{self.dtype}{self.shape}"


@dataclass
class OpCall:
    phase: str  # "forward" or "backward"
    op: str  # e.g. "aten::addmm"
    inputs: list[TensorMeta]
    outputs: list[TensorMeta]
    count: int = 1  # calls in a row with the same op, phase and shapes, folded into one
    backward_pass: int = 1  # the pass it belongs to: its forward runs before backward pass k ends


@dataclass
class SourceEntry:
    function: str  # qualified name, e.g. "Tensor.backward"
    path: str  # absolute path of the file
    line: int  # the line where the function starts
    depth: int  # how many torch functions were below it on the stack when it was first entered
    calls: int
    building: bool = False  # entered only while an nn.Module was being built (inside its __init__)

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Trace:
    """Everything recorded about one run of a scenario, in plain data."""

    scenario: str
    torch_version: str
    device: str
    graph: AutogradGraph | None = None
    backward: list[BackwardStep] = field(default_factory=list)
    ops: list[OpCall] = field(default_factory=list)
    source: list[SourceEntry] = field(default_factory=list)
    source_skipped: str | None = None  # why there is no source view, when there is none
    facts: dict[str, Any] = field(default_factory=dict)
    torch_commit: str = ""  # the commit (or release tag) every link points at
    kernels: list[OpKernel] = field(default_factory=list)  # below each ATen op: one per phase and op, in first-call order
    native_skipped: str | None = None  # why the kernels have no C++ path, when they have none
    schema_version: int = SCHEMA_VERSION

    # How a trace is printed and saved: set by the package's face (traces/__init__.py) to the
    # renderers of traces/render/terminal.py and traces/render/files.py, loaded only when first used.
    printer: ClassVar[Callable[..., None]]
    saver: ClassVar[Callable[..., list[Path]]]

    def show(
        self,
        console: Console | None = None,
        views: tuple[str, ...] = VIEWS,
        depth: int | None = None,
        focus: str | None = None,
    ) -> None:
        """Print the views to the terminal (or to ``console``), grouped by module down to ``depth``;
        ``focus`` (a module, parameter or node name) shows that part node by node instead of the
        graph and backward views, and raises ``traces.render.focus.UnknownFocus`` for a name not in the trace."""
        Trace.printer(self, console, views, depth, focus)

    def save(self, directory: str | os.PathLike, depth: int | None = None) -> list[Path]:
        """Write ``<scenario>.json``, ``.mmd``, ``.html`` (the page, see ``traces.render.page``) and, where
        Graphviz is installed, ``.svg`` into ``directory``; the pictures show a model by module,
        ``depth`` levels deep."""
        return Trace.saver(self, Path(directory), depth)
