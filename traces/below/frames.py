"""C++ frames: a stack captured while an operator is dispatched, grouped into the layers a learner should know.

The wheel's libraries keep their symbols, so a stack captured with
``torch.utils._traceback.CapturedTraceback.extract(cpp=True)`` and symbolized
with ``torch._C._profiler.symbolize_tracebacks`` names the C++ functions a call
went through. ``cpp_layers`` groups those frames (as ``{filename, line, name}``)
into layers: the Python binding, the operator entry, autograd, the dispatcher,
the kernel; frames that only pass a call along are counted, not listed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traces.below.links import portable_path


@dataclass
class CppLayer:
    """Consecutive C++ frames of one layer, outermost first; plumbing frames are counted, not listed."""

    layer: str  # "Python", "Python binding", "operator entry", "autograd", "dispatch", "kernel",
    # "handed to the trace" (the trace's dispatch mode) or "other"
    functions: list[str]
    folded: int = 0


# The layers, tried in order on a frame's short name.
LAYERS = [
    ("kernel", re.compile(r"^at::(native|cpu|cuda|meta|compositeimplicitautograd|compositeexplicitautograd\w*)::|wrapper_")),
    ("operator entry", re.compile(r"^at::_ops::\w+::call$")),
    # Where the dispatcher hands the call to a Python dispatch mode: the trace's own.
    ("handed to the trace", re.compile(r"pythonFallback|pythonTLSSnapshotFallback|PyInterpreter|handle_torch_function")),
    (
        "Python binding",
        re.compile(r"THP|TypeError_to_NotImplemented_|^pybind11::|^torch::utils::|^torch::impl::"),
    ),
    ("autograd", re.compile(r"^torch::autograd::|^torch::ADInplaceOrView::")),
    ("dispatch", re.compile(r"^c10::|^at::_ops::\w+::redispatch$|[Ff]allback|^at::impl::")),
]


# Frames that only pass a call along: counted in their layer, not listed.
PLUMBING = re.compile(
    r"BoxedKernelWrapper|make_boxed_from_unboxed_functor|wrap_kernel_functor_unboxed_|make_boxed_function"
    r"|call_functor_with_args_from_stack|TypeError_to_NotImplemented_|^pybind11::|^std::|^c10::impl::|^c10::Dispatcher::"
)


def short_name(symbol: str) -> str:
    """A demangled C++ name without its return type, template arguments and parameters."""
    text = symbol.replace("(anonymous namespace)", "{anonymous}").strip()
    text = re.sub(r"\s+const$", "", text)
    if text.endswith(")"):  # the parameter list: drop it, from its matching "("
        depth = 0
        for index in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[index], 0)
            if depth == 0:
                text = text[:index]
                break
    while True:  # template arguments, innermost first
        stripped = re.sub(r"<[^<>]*>", "", text)
        if stripped == text:
            break
        text = stripped
    text = text.rsplit(" ", 1)[-1]  # the return type, if any
    return text.replace("{anonymous}", "(anonymous namespace)")


def is_python_source(filename: str) -> bool:
    return filename.endswith(".py")


def is_interpreter(frame: Mapping[str, Any]) -> bool:
    """A frame of CPython or the C library rather than of torch."""
    filename, name = frame["filename"], frame["name"]
    return filename.endswith((".c", ".h")) or ("::" not in name and "THP" not in name)


def layer_of(name: str) -> str:
    for layer, pattern in LAYERS:
        if pattern.search(name):
            return layer
    return "other"


def cpp_layers(frames: list[Mapping[str, Any]], stop_at: str) -> list[CppLayer]:
    """Group a captured stack (outermost first, as ``{filename, line, name}``) into layers.

    The path starts with the last Python line outside ``stop_at`` (the tracer's
    folder) and runs through torch's C++ frames to where the dispatcher handed
    the call over to the tracer. (The symbolizer does not always put Python
    frames in their place among the C++ ones, so they are taken apart.)
    """
    stop_at = str(Path(stop_at).resolve()) + os.sep
    python = [f for f in frames if is_python_source(f["filename"]) and not is_capture_machinery(f, stop_at)]
    native = [f for f in frames if not is_python_source(f["filename"])]
    end = next((i for i, f in enumerate(native) if "CapturedTraceback::gather" in f["name"]), len(native))
    while end > 0 and (is_interpreter(native[end - 1]) or native[end - 1]["name"].startswith("pybind11::")):
        end -= 1  # the interpreter and pybind11 calling the capture itself
    start = next((i for i, f in enumerate(native[:end]) if not is_interpreter(f)), end)
    layers: list[CppLayer] = []
    if python:
        line = python[-1]
        layers.append(CppLayer("Python", [f"{portable_path(line['filename'])}:{line['line']} {line['name']}"]))
    for frame in native[start:end]:
        if is_interpreter(frame):  # CPython between two stretches of C++: plumbing of the layer it sits in
            name, layer = frame["name"], layers[-1].layer
        else:
            name = short_name(frame["name"])
            layer = layer_of(name)
            if layer == "other" and PLUMBING.search(name) and layers:
                layer = layers[-1].layer  # std::function and the like: plumbing of the layer it sits in
        if not layers or layers[-1].layer != layer:
            layers.append(CppLayer(layer, []))
        if is_interpreter(frame) or PLUMBING.search(name):
            layers[-1].folded += 1
        else:
            layers[-1].functions.append(name)
    return layers


def is_capture_machinery(frame: Mapping[str, Any], stop_at: str) -> bool:
    """A Python frame of the tracer, or of torch's traceback capture that it called."""
    filename = str(frame["filename"])
    return filename.startswith(stop_at) or filename.endswith(os.path.join("torch", "utils", "_traceback.py"))
