"""The tracer: starts and stops the recorders around a run, and makes its ``Trace``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, ContextManager

import torch

from traces.basics.places import TORCH_DIR, TRACES_DIR
from traces.below.cache import installed_index
from traces.below.dispatcher import describe_ops
from traces.below.formulas import node_derivative
from traces.below.links import torch_commit
from traces.data.graph import autograd_nodes, input_node_ids
from traces.data.tensors import tracer_at_work
from traces.data.trace import NATIVE_NOT_ASKED, Trace
from traces.recorders.backward import BackwardRecording, record_backward
from traces.recorders.modules import ModuleRecorder
from traces.recorders.ops import OpRecorder
from traces.recorders.source import SourceRecorder


class Tracer:
    """Records the views of a run while enabled; a disabled tracer records nothing.

    The runner wraps the whole lesson in ``tracer.recording()``; the lesson wraps
    its backward call::

        with tracer.backward_of({"y": y}, names={"w": w, "x": x}):
            y.backward()

    so that the same line of code runs, and can be stepped into, either way.
    Everything from the start of the recording up to that backward is the
    forward phase; recording ends when the backward does.
    """

    def __init__(self, enabled: bool = True, native: bool = False) -> None:
        self.enabled = enabled
        self.native = native  # also capture the C++ frames of each distinct operator
        self.backward_recording: BackwardRecording | None = None
        self.device: str | None = None  # where the traced backward's outputs live
        self._ops: OpRecorder | None = None
        self._source: SourceRecorder | None = None
        self._modules: ModuleRecorder | None = None

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record operators, torch functions entered and modules while the block runs."""
        if not self.enabled:
            yield
            return
        self._modules = ModuleRecorder()
        self._ops = OpRecorder(native=self.native)
        self._source = SourceRecorder(TORCH_DIR)
        # The source view starts at the first operator: the imports at the top of a script,
        # which run hundreds of torch's functions and nothing of the code's, cost nothing.
        self._ops.at_first_operator = self._source.start
        try:
            self._modules.start()
            self._ops.start()
            yield
        finally:
            self._stop()

    def _stop(self) -> None:
        """Remove every hook and mode; safe to call more than once."""
        if self._source is not None:
            self._source.stop()
        if self._ops is not None:
            self._ops.stop()
        if self._modules is not None:
            self._modules.stop()

    @contextmanager
    def untraced_backward(self) -> Iterator[None]:
        """A backward pass before the traced one: its ops are that pass's backward, and what runs
        after it belongs to the next pass."""
        if self._ops is not None:
            self._ops.phase = "backward"
        try:
            yield
        finally:
            if self._ops is not None:
                self._ops.pass_ended()
            if self._modules is not None:
                self._modules.new_pass()

    def backward_of(
        self,
        outputs: Mapping[str, torch.Tensor],
        names: Mapping[str, torch.Tensor] | None = None,
        inputs: list[torch.Tensor] | None = None,
        returns: bool = False,
    ) -> ContextManager:
        """Record the backward pass run inside the block. ``inputs``: the tensors whose gradients
        the call asks for (autograd.grad's, or backward's ``inputs=``), None for every leaf's;
        ``returns``: the call returns them (autograd.grad) rather than filling in ``.grad``."""
        if not self.enabled:
            return nullcontext()
        if self.backward_recording is not None:
            raise RuntimeError("a tracer records one backward pass; this one already has")
        return self._record_backward(outputs, names, inputs, returns)

    @contextmanager
    def _record_backward(self, outputs, names, inputs=None, returns=False) -> Iterator[BackwardRecording]:
        module_of, modules = None, None
        if self._modules is not None:
            with tracer_at_work():  # the module walks call torch's Python: not the code's own
                module_of = self._modules.module_names()
                modules = self._modules.module_infos()
                # A model's parameters by their names, unless the code names them.
                names = {**self._modules.parameter_names(), **(names or {})}
        self.device = next((str(t.device) for t in outputs.values()), None)
        if self._ops is not None:
            self._ops.phase = "backward"
        try:
            place_of = self._ops.node_places.place_of if self._ops else None
            with record_backward(outputs, names, module_of, modules, place_of) as recording:
                if inputs is not None:
                    with tracer_at_work():
                        recording.graph.inputs = input_node_ids(autograd_nodes(outputs), recording.graph, inputs)
                        recording.graph.returns = returns
                self.backward_recording = recording
                yield recording
        finally:
            self._stop()

    def trace(self, scenario: str, device: str | None = None, facts: Any = None) -> Trace:
        """The finished trace of a run whose lesson returned ``facts``.

        ``device`` defaults to where the traced backward's outputs lived.
        """
        if facts is None:
            facts = {}
        if dataclasses.is_dataclass(facts):
            facts = dataclasses.asdict(facts)
        recording = self.backward_recording
        source = self._source
        index = installed_index()
        if recording:
            for node in recording.graph.nodes:
                node.derivative = node_derivative(node.name, index)
        first_calls = self._ops.first_calls if self._ops else {}
        return Trace(
            scenario=scenario,
            torch_version=torch.__version__,
            device=device or self.device or "cpu",
            graph=recording.graph if recording else None,
            backward=recording.steps if recording else [],
            ops=self._ops.calls if self._ops else [],
            source=list(source.entries.values()) if source else [],
            source_skipped=source.skipped if source else "the run was not recorded",
            facts=facts,
            torch_commit=torch_commit(),
            kernels=describe_ops(first_calls, TRACES_DIR, index),
            native_skipped=native_skipped(self.native, first_calls),
        )


def native_skipped(asked: bool, first_calls) -> str | None:
    """Why the trace has no C++ frames, or None when it has them."""
    if not asked:
        return NATIVE_NOT_ASKED
    problems = {call.problem for call in first_calls.values() if call.problem}
    return "; ".join(sorted(problems)) or None


# The tracer lessons get when nobody traces them. It is never enabled, so it never
# holds any state.
NO_TRACE = Tracer(enabled=False)
