"""Trace any code: ``traces.record()``, and the backward watch behind ``python -m traces``.

    import traces

    with traces.record() as trace:
        loss = model(x).sum()
        loss.backward()
    trace.show()          # the four views, in the terminal
    trace.save("traces")  # traces/trace.json, .mmd and .svg

Recording starts with the block and ends when the block's first backward pass
(``Tensor.backward``, ``torch.autograd.backward`` or ``torch.autograd.grad``,
also as ``torch.func.grad`` calls it) ends, or with the block if it has none.
To find that backward, the block runs with ``torch.autograd.backward`` and
``torch.autograd.grad`` wrapped (``Tensor.backward`` calls the first), and the
engine's entry that both call, so that a ``grad`` imported by name before the
block (``from torch.autograd import grad``) is seen too. The wrappers count the calls and record
the one asked for; every call gets its arguments and returns its result
unchanged. The originals are put back as soon as the traced backward ends, or
when the block ends (also on an error or Ctrl-C), whichever comes first.

Only the thread that started recording is traced (a dispatch mode and a
tracing hook belong to one thread), and only in the process that started it:
a backward on another thread, or in a forked child, runs untouched and is
only counted (``BackwardWatch.elsewhere``).

The graph's nodes are named after the variables of the code that called
backward (``loss``, ``h``) and, for a model, after its parameters
(``layer1.0.conv1.weight``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

import torch

from traces.basics.places import TORCH_DIR, TRACES_DIR, is_users_file, users_frame
from traces.data.trace import Trace
from traces.recorders.tracer import Tracer

# Where torch calls backward on the user's behalf: Tensor.backward, torch.autograd.functional,
# torch.func's grad, vjp and jacrev (which call torch.autograd.grad), ...
USERS_WAY_IN = (
    os.path.join(TORCH_DIR, "_tensor.py"),
    os.path.join(TORCH_DIR, "autograd") + os.sep,
    os.path.join(TORCH_DIR, "_functorch") + os.sep,
    os.path.join(TORCH_DIR, "func") + os.sep,
)


def called_by_users_code(caller: FrameType | None) -> bool:
    """Whether a backward was started by the user's code (maybe through ``Tensor.backward``),
    not by torch for itself (``torch.compile`` runs backward while it compiles)."""
    while caller is not None and caller.f_code.co_filename.startswith(USERS_WAY_IN):
        caller = caller.f_back
    return caller is None or is_users_file(caller.f_code.co_filename)


def as_tensors(value) -> list[torch.Tensor]:
    """backward's ``tensors`` or grad's ``outputs``: a tensor or a sequence of them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [item for item in value if isinstance(item, torch.Tensor)]
    return []  # a GradientEdge: no tensor to start the walk from


def tensor_names(frame: FrameType | None) -> dict[str, torch.Tensor]:
    """The variables of ``frame`` that hold tensors requiring grad, by name."""
    if frame is None:
        return {}
    return {
        name: value
        for name, value in frame.f_locals.items()
        if isinstance(value, torch.Tensor) and value.requires_grad and not name.startswith("_")
    }


def named_outputs(outputs: list[torch.Tensor], local_names: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each output under its variable's name where it has one ("loss"), else "output" (or "output 1", ...)."""
    name_of = {}
    for name, tensor in local_names.items():
        name_of.setdefault(id(tensor), name)
    named = {}
    for number, tensor in enumerate(outputs):
        fallback = "output" if len(outputs) == 1 else f"output {number}"
        named[name_of.get(id(tensor), fallback)] = tensor
    return named


def without_tracer_frames(tb: TracebackType | None) -> TracebackType | None:
    """A traceback without the tracer's own frames (the watch's wrappers): what the code's
    traceback would be, had it run untraced."""
    kept = []
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(TRACES_DIR + os.sep):
            kept.append(tb)
        tb = tb.tb_next
    for entry, after in zip(kept, [*kept[1:], None]):
        entry.tb_next = after
    return kept[0] if kept else None


# The watch's functions that only pass the code's backward call on to torch: a debugger
# (pydevd_plugins/extensions/stepthrough_session.py) steps through them into torch's own code.
PASSES_CALLS_ON = ("wrapper", "_record")


# What torch.autograd.backward and torch.autograd.grad call to run the engine (torch 2.3 and newer).
ENGINE_ENTRY = "_engine_run_backward"


class BackwardWatch:
    """Wraps ``torch.autograd.backward`` and ``torch.autograd.grad`` to record the N-th backward pass,
    and the engine's entry that both call, for a ``grad`` imported by name before the wrapping.

    ``calls`` counts the backward passes the code started: one inside another
    (a reentrant checkpoint's) is part of the outer one, and one torch runs for
    itself (``torch.compile``'s, while it compiles) is not the code's.
    ``elsewhere`` counts those started on other threads, which are not traced.
    """

    def __init__(self, tracer: Tracer, wanted: int = 1) -> None:
        if wanted < 1:
            raise ValueError(f"backward={wanted}: the backward pass to record is counted from 1")
        self.tracer = tracer
        self.wanted = wanted
        self.calls = 0
        self.recorded = False
        self.elsewhere = 0  # backward passes the code started on other threads: not traced
        self.thread = threading.get_ident()  # the thread, and the process, whose backward is traced
        self.pid = os.getpid()
        self._inside = 0  # backward passes running now on the traced thread
        self._elsewhere_inside = threading.local()  # and on each other thread
        self._wrappers: dict[str, tuple[Callable, Callable]] = {}  # name -> (original, wrapper)

    def install(self) -> None:
        self.thread, self.pid = threading.get_ident(), os.getpid()
        self._wrap("backward", lambda args, kwargs: args[0] if args else kwargs.get("tensors"))
        self._wrap("grad", lambda args, kwargs: args[0] if args else kwargs.get("outputs"))
        # Both run the engine through this name in torch.autograd's namespace: a ``grad`` or
        # ``backward`` the code imported by name before recording started reaches it unwrapped.
        self._wrap(ENGINE_ENTRY, lambda args, kwargs: args[0] if args else kwargs.get("t_outputs"))

    def remove(self) -> None:
        """Put the originals back; safe to call more than once."""
        for name, (original, wrapper) in self._wrappers.items():
            if getattr(torch.autograd, name) is wrapper:  # else someone wrapped it again: theirs calls ours
                setattr(torch.autograd, name, original)
        self._wrappers = {}

    def _wrap(self, name: str, outputs_of: Callable) -> None:
        original = getattr(torch.autograd, name, None)
        if original is None:  # an older torch without the engine's entry: the two wrappers do
            return

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if threading.get_ident() != self.thread or os.getpid() != self.pid:
                return self._untouched(original, args, kwargs)
            if self._inside or self.recorded or not self._wrappers or not called_by_users_code(sys._getframe(1)):
                return original(*args, **kwargs)
            self.calls += 1
            self._inside += 1
            try:
                if self.calls != self.wanted:
                    with self.tracer.untraced_backward():
                        return original(*args, **kwargs)
                return self._record(original, outputs_of(args, kwargs), sys._getframe(1), args, kwargs)
            except BaseException as error:  # the code's error: its traceback reads as it does untraced
                error.__traceback__ = without_tracer_frames(error.__traceback__)
                raise
            finally:
                self._inside -= 1

        self._wrappers[name] = (original, wrapper)
        setattr(torch.autograd, name, wrapper)

    def _untouched(self, original: Callable, args, kwargs):
        """A backward on another thread (or in a forked child): run as it is, and counted once
        (``backward`` calls the engine's entry, which is wrapped too)."""
        outermost = not getattr(self._elsewhere_inside, "depth", 0)
        if outermost and os.getpid() == self.pid and called_by_users_code(sys._getframe(2)):
            self.elsewhere += 1
        self._elsewhere_inside.depth = getattr(self._elsewhere_inside, "depth", 0) + 1
        try:
            return original(*args, **kwargs)
        finally:
            self._elsewhere_inside.depth -= 1

    def _record(self, original: Callable, outputs, caller: FrameType, args, kwargs):
        try:
            local_names = tensor_names(users_frame(caller))
            outputs = named_outputs(as_tensors(outputs), local_names)
            inputs, returns = asked_for(original.__name__, args, kwargs)
            with self.tracer.backward_of(outputs, names=local_names, inputs=inputs, returns=returns):
                return original(*args, **kwargs)
        finally:
            self.recorded = True
            self.remove()


def asked_for(name: str, args, kwargs) -> tuple[list[torch.Tensor] | None, bool]:
    """The tensors whose gradients a backward call asks for (None: every leaf's), and whether it
    returns them (``torch.autograd.grad``) rather than filling in ``.grad``."""
    if name == "grad":
        return as_tensors(args[1] if len(args) > 1 else kwargs.get("inputs")), True
    if name == "backward":
        inputs = args[5] if len(args) > 5 else kwargs.get("inputs")
        return (as_tensors(inputs) or None if inputs is not None else None), False
    # The engine's entry: (outputs, grad_outputs, retain_graph, create_graph, inputs, allow_unused, accumulate_grad)
    returns = not (args[6] if len(args) > 6 else kwargs.get("accumulate_grad", True))
    inputs = args[4] if len(args) > 4 else kwargs.get("inputs")
    return (as_tensors(inputs) or None), returns


@contextmanager
def watching(watch: BackwardWatch) -> Iterator[BackwardWatch]:
    """Record the tracer's views while the block runs, and the backward pass the watch wants."""
    with watch.tracer.recording():
        watch.install()
        try:
            yield watch
        finally:
            watch.remove()


@contextmanager
def record(name: str = "trace", backward: int = 1) -> Iterator[Trace]:
    """Record the code inside the block, up to the end of its ``backward``-th backward pass.

    Yields a ``Trace`` that is filled in when the block ends: ``trace.show()``
    prints it, ``trace.save(directory)`` writes ``<name>.json``, ``.mmd`` and
    ``.svg`` there. ``trace.graph`` is None when the block ran no backward.
    """
    tracer = Tracer()
    watch = BackwardWatch(tracer, backward)  # checks ``backward`` before anything starts
    trace = Trace(scenario=name, torch_version=torch.__version__, device="cpu")
    try:
        with watching(watch):
            yield trace
    finally:
        finished = tracer.trace(name)
        for item in dataclasses.fields(Trace):
            setattr(trace, item.name, getattr(finished, item.name))
