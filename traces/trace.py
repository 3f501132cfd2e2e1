"""One object for the views of one scenario run, and the tracer that records them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ContextManager

import torch

from traces.backward import BackwardRecording, BackwardStep, record_backward
from traces.graph import AutogradGraph

SCHEMA_VERSION = 1


@dataclass
class Trace:
    """Everything recorded about one run of a scenario, in plain data."""

    scenario: str
    torch_version: str
    device: str
    graph: AutogradGraph | None = None
    backward: list[BackwardStep] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


class Tracer:
    """Records the views of a run while enabled; a disabled tracer records nothing.

    A scenario wraps its backward call::

        with tracer.backward_of({"y": y}, names={"w": w, "x": x}):
            y.backward()

    so that the same line of code runs, and can be stepped into, either way.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.recording: BackwardRecording | None = None

    def backward_of(
        self,
        outputs: Mapping[str, torch.Tensor],
        names: Mapping[str, torch.Tensor] | None = None,
    ) -> ContextManager:
        if not self.enabled:
            return nullcontext()
        if self.recording is not None:
            raise RuntimeError("a tracer records one backward pass; this one already has")
        return self._record(outputs, names)

    @contextmanager
    def _record(self, outputs, names) -> Iterator[BackwardRecording]:
        with record_backward(outputs, names) as recording:
            self.recording = recording
            yield recording

    def trace(self, scenario: str, device: str, facts: Any) -> Trace:
        """The finished trace of a run whose lesson returned ``facts``."""
        if dataclasses.is_dataclass(facts):
            facts = dataclasses.asdict(facts)
        recording = self.recording
        return Trace(
            scenario=scenario,
            torch_version=torch.__version__,
            device=device,
            graph=recording.graph if recording else None,
            backward=recording.steps if recording else [],
            facts=facts,
        )


# The tracer lessons get when nobody traces them. It is never enabled, so it never
# holds any state.
NO_TRACE = Tracer(enabled=False)
