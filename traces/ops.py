"""The ops view: every ATen operator that ran, with its input and output shapes.

A ``TorchDispatchMode`` sits below autograd in PyTorch's dispatcher, so it sees
the operators that really run: those of the forward pass, and those the autograd
engine runs for backward (it carries the mode into its work). Each call is
labelled with the phase the tracer was in.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils._python_dispatch import TorchDispatchMode

from traces.native import FirstCall, observe_call
from traces.tensors import dtype_name, is_tracer_at_work, iter_tensors, tracer_at_work


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


def tensor_metas(value) -> list[TensorMeta]:
    """Shape and dtype of each tensor in an operator's arguments or result."""
    return [TensorMeta(list(t.shape), dtype_name(t)) for t in iter_tensors(value)]


class OpRecorder(TorchDispatchMode):
    """Records each operator call; setting ``phase`` labels the calls from then on.

    At each operator's first call it also notes what ``traces.native`` needs to
    say what ran below it: the call's dispatch keys and, with ``native=True``,
    the C++ frames that led here (the first capture takes a second or two).
    """

    def __init__(self, native: bool = False) -> None:
        super().__init__()
        self.phase = "forward"
        self.calls: list[OpCall] = []
        self.first_calls: dict[tuple[str, str], FirstCall] = {}  # (phase, op) -> what its first call noted
        self.native = native
        self._active = False

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # By default torch wraps __torch_dispatch__ so that torch.compile skips it,
        # and that wrapper imports torch._dynamo (about a second) at the first
        # operator. This mode only records, in eager mode: it needs no wrapper.
        return False

    def start(self) -> None:
        self.__enter__()
        self._active = True

    def stop(self) -> None:
        """Leave the mode; safe to call more than once."""
        if self._active:
            self._active = False
            self.__exit__(None, None, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if is_tracer_at_work():  # an operator the tracer itself ran
            return func(*args, **(kwargs or {}))
        with tracer_at_work():  # even the operator's Python wrapper is not the scenario's code
            inputs = tensor_metas((args, kwargs))  # before the call: an in-place op changes them
            result = func(*args, **(kwargs or {}))
            self.calls.append(OpCall(self.phase, func.name(), inputs, tensor_metas(result)))
            if (self.phase, func.name()) not in self.first_calls:
                tensors = list(iter_tensors((args, kwargs))) or list(iter_tensors(result))  # a factory has no inputs
                self.first_calls[self.phase, func.name()] = observe_call(tensors, self.native)
        return result


@dataclass
class OpCount:
    """Calls of one operator in one phase, folded: how many, and the first call's shapes."""

    op: str
    count: int
    first: OpCall


def fold_calls(calls: list[OpCall], phase: str) -> list[OpCount]:
    """One row per operator of ``phase``, in the order each first ran."""
    folded: dict[str, OpCount] = {}
    for call in calls:
        if call.phase != phase:
            continue
        if call.op in folded:
            folded[call.op].count += 1
        else:
            folded[call.op] = OpCount(call.op, 1, call)
    return list(folded.values())
