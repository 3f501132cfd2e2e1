"""The ops view: every ATen operator that ran, with its input and output shapes.

A ``TorchDispatchMode`` sits below autograd in PyTorch's dispatcher, so it sees
the operators that really run: those of the forward pass, and those the autograd
engine runs for backward (it carries the mode into its work). Each call is
labelled with the phase the tracer was in, and the backward pass it belongs
to: with ``--backward 2``, pass 1's forward and backward ran before the traced
pass 2's.

The same mode notes where the user's code was when an operator made an
autograd node. Autograd numbers the nodes it makes, in order
(``node._sequence_nr()``), and makes an operator's node before the operator
reaches this mode; so when the next number to give out has moved since the
last operator, the operator running now made the nodes in between.
"""

from __future__ import annotations

import sys
import threading
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from sys import gettrace, settrace
from types import FrameType

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from traces.basics.places import importing_now, node_makers_line
from traces.below.dispatcher import FirstCall, observe_call
from traces.data.tensors import _tracer_at_work as _at_work
from traces.data.tensors import dtype_name, iter_tensors
from traces.data.trace import OpCall, TensorMeta

# The next sequence number autograd will give a node (torch 2.1 and newer).
next_sequence_nr = getattr(torch._C._autograd, "_get_sequence_nr", lambda: None)


def tensor_metas(value) -> list[TensorMeta]:
    """Shape and dtype of each tensor in an operator's arguments or result."""
    return [TensorMeta(list(t.shape), dtype_name(t)) for t in iter_tensors(value)]


def shapes_of(value, more: dict | None = None) -> tuple:
    """``((shape, dtype), ...)`` of the tensors in an operator's arguments or result: a tensor,
    or tuples and lists of them, one level down (all that an ATen operator takes), as cheaply as
    possible, since it runs for every operator."""
    found = []
    items = value if type(value) in (tuple, list) else (value,)
    if more:
        items = (*items, *more.values())
    for item in items:
        if isinstance(item, Tensor):
            found.append((tuple(item.shape), item.dtype))
        elif type(item) in (tuple, list):
            for inner in item:
                if isinstance(inner, Tensor):
                    found.append((tuple(inner.shape), inner.dtype))
    return tuple(found)


def metas(shapes: tuple) -> list[TensorMeta]:
    return [TensorMeta(list(shape), str(dtype).removeprefix("torch.")) for shape, dtype in shapes]


class NodePlaces:
    """Where the user's code was when each autograd node was made, found by the node's sequence number."""

    def __init__(self) -> None:
        self._first = next_sequence_nr()  # nodes made before recording started are not known
        self._next_numbers: list[int] = []  # ascending
        self._places: list[tuple[str, int] | None] = []

    def note(self, next_number: int, place: tuple[str, int] | None) -> None:
        """Nodes numbered below ``next_number`` and not yet noted were made at ``place``."""
        self._next_numbers.append(next_number)
        self._places.append(place)

    def place_of(self, sequence_nr: int) -> tuple[str, int] | None:
        if self._first is None or sequence_nr < self._first:
            return None
        index = bisect_right(self._next_numbers, sequence_nr)
        return self._places[index] if index < len(self._places) else None


class OpRecorder(TorchDispatchMode):
    """Records each operator call; setting ``phase`` labels the calls from then on.

    At each operator's first call it also notes what ``traces.below.dispatcher`` needs to
    say what ran below it: the call's dispatch keys and, with ``native=True``,
    the C++ frames that led here (the first capture takes a second or two).
    """

    def __init__(self, native: bool = False) -> None:
        super().__init__()
        self.phase = "forward"
        self.backward_pass = 1  # the pass the calls from now on belong to
        self._calls: list[list] = []  # [phase, op, inputs, outputs, count, backward_pass]; see ``calls``
        self._names: dict = {}  # operator -> its name
        self.node_places = NodePlaces()
        self._noted = self.node_places._first
        self.first_calls: dict[tuple[str, str], FirstCall] = {}  # (phase, op) -> what its first call noted
        self.native = native
        self._active = False
        # Called once, at the first operator, with the frame that called it (see Tracer.recording).
        self.at_first_operator: Callable[[FrameType], None] | None = None

    @classmethod
    def ignore_compile_internals(cls) -> bool:
        # A mode that does not ignore them makes torch.compile run the model uncompiled
        # (Dynamo skips frames while such a mode is active). Ignoring them, the mode is
        # off while torch.compile compiles and sees what the compiled code runs.
        return True

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # By default torch wraps __torch_dispatch__ so that torch.compile skips it,
        # and that wrapper imports torch._dynamo (about a second) at the first
        # operator. This mode only records, in eager mode: it needs no wrapper.
        return False

    def start(self) -> None:
        self.__enter__()
        self._active = True
        self._thread = threading.get_ident()  # a mode is pushed on one thread's stack, and popped there

    def stop(self) -> None:
        """Leave the mode; safe to call more than once. Called on another thread than the one
        that started it, it does nothing: that thread's stack is not this one's."""
        if self._active and threading.get_ident() == self._thread:
            self._active = False
            self.__exit__(None, None, None)

    @property
    def calls(self) -> list[OpCall]:
        """The calls so far, in order, consecutive identical ones folded (with their count)."""
        return [
            OpCall(phase, op, metas(inputs), metas(outputs), count, backward_pass)
            for phase, op, inputs, outputs, count, backward_pass in self._calls
        ]

    def pass_ended(self) -> None:
        """A backward pass before the traced one ended: what runs next is the next pass's forward."""
        self.phase = "forward"
        self.backward_pass += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        if _at_work.get() or importing_now():  # an operator the tracer ran, or an import (not the code's)
            return func(*args, **kwargs)
        if self.at_first_operator is not None:
            at_first_operator, self.at_first_operator = self.at_first_operator, None
            at_first_operator(sys._getframe(1))
        number = next_sequence_nr()
        if number != self._noted:  # this operator made autograd nodes: note where the user's code is
            self._noted = number
            self.node_places.note(number, node_makers_line())
        # What follows is the tracer's work (even the operator's Python wrapper is not the
        # code's): tracer_at_work, written out, since this runs for every operator.
        token = _at_work.set(True)
        tracing = gettrace()
        paused = getattr(tracing, "paused_while_tracer_works", False)
        if paused:
            settrace(None)
        try:
            inputs = shapes_of(args, kwargs)  # before the call: an in-place op changes them
            result = func(*args, **kwargs)
            outputs = shapes_of(result)
            name = self._names.get(func)
            if name is None:
                name = self._names[func] = func.name()
            last = self._calls[-1] if self._calls else None
            if (
                last and last[1] == name and last[0] == self.phase and last[2] == inputs and last[3] == outputs
                and last[5] == self.backward_pass
            ):  # fmt: skip
                last[4] += 1
            else:
                self._calls.append([self.phase, name, inputs, outputs, 1, self.backward_pass])
            if (self.phase, name) not in self.first_calls:
                tensors = list(iter_tensors((args, kwargs))) or list(iter_tensors(result))  # a factory has no inputs
                self.first_calls[self.phase, name] = observe_call(tensors, self.native)
        finally:
            if paused:
                settrace(tracing)
            _at_work.reset(token)
        return result


@dataclass
class OpCount:
    """Calls of one operator in one phase, folded: how many, and the first call's shapes."""

    op: str
    count: int
    first: OpCall


def passes(calls: list[OpCall]) -> list[int]:
    """The backward passes the calls belong to, in order (the last is the traced one)."""
    return sorted({call.backward_pass for call in calls}) or [1]


def fold_calls(calls: list[OpCall], phase: str, backward_pass: int | None = None) -> list[OpCount]:
    """One row per operator of ``phase`` in ``backward_pass`` (by default the traced pass, the
    last), in the order each first ran."""
    if backward_pass is None:
        backward_pass = passes(calls)[-1]
    folded: dict[str, OpCount] = {}
    for call in calls:
        if call.phase != phase or call.backward_pass != backward_pass:
            continue
        if call.op in folded:
            folded[call.op].count += call.count
        else:
            folded[call.op] = OpCount(call.op, call.count, call)
    return list(folded.values())
