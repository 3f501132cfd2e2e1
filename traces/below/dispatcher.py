"""The live dispatcher: what is registered for an operator, and which kernels a call went through.

Reads ``torch._C._dispatch_dump_table`` (what is registered at each dispatch
key, and in which C++ file) and ``torch._C._dispatch_keys`` (the keys of a
call's tensors), and joins them with the operator's ``native_functions.yaml``
entry (``schema.py``) to say which kernel did the work and which C++ function
to break on (``describe_op``). At each operator's first call the ops view
notes its keys and, with ``--native``, its C++ frames (``observe_call``);
``describe_ops`` turns those notes into one ``OpKernel`` per operator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from traces.below.cache import Index, installed_index
from traces.below.frames import CppLayer, cpp_layers
from traces.below.links import SourceLink, link_for_build_path, repository_link
from traces.below.schema import NATIVE_FUNCTIONS_YAML, find_kernel, kernel_symbol

# The dispatcher's own phrases for what is registered at a key.
REGISTRATION = re.compile(r"^(?P<key>\w+): (?P<fallthrough>fallthrough )?registered at (?P<path>.+):(?P<line>\d+) \[(?P<kind>[^\]]+)\]$")


@dataclass
class DispatchStep:
    key: str  # e.g. "AutogradCPU"
    kernel: str  # what the dispatcher has there: "autograd kernel", "kernel", "math kernel", "backend fallback", ...
    fallthrough: bool  # the key passes the call on to the next one without running anything
    registered: SourceLink


def dispatch_table(op: str, keys: Iterable[str] | None = None) -> dict[str, DispatchStep]:
    """What is registered for an operator, by dispatch key (only ``keys``, when given), as the live dispatcher says."""
    try:
        dump = torch._C._dispatch_dump_table(op)
    except RuntimeError:
        return {}  # not an operator the dispatcher knows
    wanted = set(keys) if keys is not None else None
    table = {}
    for line in dump.splitlines():
        key = line.partition(":")[0]
        if wanted is not None and key not in wanted:
            continue  # a hundred-odd keys per op: link only the ones asked for
        match = REGISTRATION.match(line.strip())
        if match:
            table[key] = DispatchStep(
                key, match["kind"], bool(match["fallthrough"]), link_for_build_path(match["path"], int(match["line"]))
            )
    return table


# Keys whose kernels run and then hand the call on below themselves; a
# "math kernel" (CompositeImplicitAutograd) instead calls other operators.
PASSING_ON = re.compile(r"^(Autograd\w*|ADInplaceOrView|Autocast\w*|Functionalize|Python\w*|Tracer|FuncTorch\w*)$")


def dispatch_path(table: Mapping[str, DispatchStep], keys: list[str]) -> list[DispatchStep]:
    """The keys a call went through, highest priority first, up to the kernel that did the work.

    ``table`` is the operator's ``dispatch_table``; ``keys`` are the dispatch keys of the call's tensors, lowest priority first
    (as ``torch._C._dispatch_keys`` lists them). Keys with nothing registered
    for this operator are skipped by the dispatcher, and here.
    """
    path = []
    for key in reversed(keys):
        step = table.get(key)
        if step is None:
            continue
        path.append(step)
        if not step.fallthrough and (step.kernel == "math kernel" or not PASSING_ON.match(key)):
            break
    return path


@dataclass
class OpKernel:
    """What is below one ATen operator: its native_functions.yaml entry, the kernel and the dispatch path."""

    op: str  # e.g. "aten::mul.Tensor"
    phase: str = "forward"  # of the call described (its C++ path differs between forward and backward)
    schema: str | None = None
    source: SourceLink | None = None  # its native_functions.yaml entry
    structured_delegate: str | None = None  # the out= variant whose kernel does the work, e.g. "mul.out"
    device_key: str | None = None  # the backend key of the call's tensors, e.g. "CPU"
    kernel: str | None = None  # the kernel's name in native_functions.yaml, e.g. "mul_out"
    kernel_entry: str | None = None  # the entry that names it: the op itself or its delegate
    kernel_key: str | None = None  # the key it is listed under, e.g. "CPU" or "CompositeExplicitAutograd"
    symbol: str | None = None  # the C++ function to break on, e.g. "at::native::structured_mul_out::impl"
    registered: SourceLink | None = None  # where the dispatcher has the kernel for device_key registered
    dispatch: list[DispatchStep] = field(default_factory=list)
    cpp_path: list[CppLayer] | None = None  # with --native: the C++ frames, grouped
    note: str | None = None


def describe_op(op: str, keys: list[str], index: Index | None = None, phase: str = "forward") -> OpKernel:
    """Everything known below the operator ``op`` ("aten::mul.Tensor"), called with tensors of ``keys``."""
    index = index if index is not None else installed_index()
    table = dispatch_table(op, keys)
    kernel = OpKernel(op=op, phase=phase, device_key=keys[0] if keys else None, dispatch=dispatch_path(table, keys))
    if kernel.device_key in table:
        kernel.registered = table[kernel.device_key].registered
    namespace, _, name = op.partition("::")
    entry = index.functions.get(name) if namespace == "aten" else None
    if entry is None and index.problem:
        kernel.note = f"native_functions.yaml could not be read: {index.problem}"
        return kernel
    if entry is None:
        kernel.note = (
            f"not in native_functions.yaml: {op} is registered with the dispatcher directly "
            "(see where it is registered)"
        )
        return kernel
    kernel.schema = entry["schema"]
    kernel.source = repository_link(NATIVE_FUNCTIONS_YAML, entry["line"])
    kernel.structured_delegate = entry["structured_delegate"]
    found = find_kernel(index.functions, name, kernel.device_key or "CPU")
    if found is not None:
        kernel.kernel_entry, kernel.kernel_key, (kernel.kernel, structured, cpp_namespace) = found
        kernel.symbol = kernel_symbol(kernel.kernel, structured, cpp_namespace)
    return kernel


# ---------------------------------------------------------------------------
# The first call of each operator: its dispatch keys and, on request, its C++ frames
# ---------------------------------------------------------------------------

# The keys autograd's own kernel excludes while it hands a call on, so that a
# dispatch mode below it sees them excluded; they were active when the call came in.
KEYS_ABOVE_A_DISPATCH_MODE = re.compile(r"^(Autograd\w*|ADInplaceOrView)$")


@dataclass
class FirstCall:
    """What the ops view notes at an operator's first call; turned into an ``OpKernel`` at the end."""

    keys: list[str]  # dispatch keys of the call's tensors that were active, lowest priority first
    traceback: Any = None  # a CapturedTraceback with C++ frames, when asked for
    problem: str | None = None  # why no C++ frames were captured


def tensor_keys(tensors: Iterable[torch.Tensor]) -> list[str]:
    """The dispatch keys of some tensors that the dispatcher would use now, lowest priority first."""
    keys: list[str] = []
    for tensor in tensors:
        text = str(torch._C._dispatch_keys(tensor))  # "DispatchKeySet(CPU, ADInplaceOrView, AutogradCPU, ...)"
        for key in re.findall(r"\w+", text.partition("(")[2]):
            if key not in keys:
                keys.append(key)
    return [key for key in keys if KEYS_ABOVE_A_DISPATCH_MODE.match(key) or not tls_excluded(key)]


def tls_excluded(key: str) -> bool:
    """Whether the thread turned the key off (the Autocast keys, unless autocast is on)."""
    dispatch_key = getattr(torch._C.DispatchKey, key, None)
    return dispatch_key is not None and torch._C._dispatch_tls_is_dispatch_key_excluded(dispatch_key)


def observe_call(tensors: list[torch.Tensor], capture_cpp: bool) -> FirstCall:
    """Called from inside a dispatch mode, at an operator's first call."""
    call = FirstCall(tensor_keys(tensors))
    if capture_cpp:
        try:
            from torch.utils._traceback import CapturedTraceback

            call.traceback = CapturedTraceback.extract(cpp=True)
        except Exception as error:  # an unwinder this platform lacks: say so, never fail the run
            call.problem = f"C++ frames could not be captured here: {error}"
    return call


def describe_ops(
    first_calls: Mapping[tuple[str, str], FirstCall], stop_at: str, index: Index | None = None
) -> list[OpKernel]:
    """One ``OpKernel`` per (phase, operator), in first-call order, with C++ paths where captured.

    ``stop_at`` is the folder of the code that captured the frames (the tracer):
    the C++ path ends where the dispatcher handed the call to it.
    """
    kernels = [describe_op(op, call.keys, index, phase) for (phase, op), call in first_calls.items()]
    captured = [(kernel, call.traceback) for kernel, call in zip(kernels, first_calls.values()) if call.traceback]
    if captured:
        from torch._C._profiler import symbolize_tracebacks

        symbolized = symbolize_tracebacks([traceback.tb for _, traceback in captured])
        for (kernel, _), frames in zip(captured, symbolized):
            kernel.cpp_path = cpp_layers(list(reversed(frames)), stop_at)  # outermost first
    return kernels
