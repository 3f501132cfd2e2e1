"""Autograd nodes, by where they come from: a ``derivatives.yaml`` entry, or C++ written by hand.

Each generated node (``MulBackward0``) comes from an entry of
``tools/autograd/derivatives.yaml``, which the wheel ships as
``torchgen/packaged/autograd/derivatives.yaml``; torchgen's own loader
(``load_derivatives``) turns it into the node names and, per input, the formula
that computes its gradient (``node_entries``). A few nodes (``AccumulateGrad``,
``CopySlices``, ...) are written by hand in C++: ``CPP_NODES`` says what each
does, and ``cpp_node_entries`` finds the line that declares it in the header
the wheel installs under ``torch/include``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from traces.below.links import repository_link

DERIVATIVES_YAML = "tools/autograd/derivatives.yaml"


# Autograd nodes written by hand in C++, not generated from derivatives.yaml:
# the header that declares each (installed under torch/include) and what it does.
CPP_NODES = {
    "AccumulateGrad": (
        "torch/csrc/autograd/functions/accumulate_grad.h",
        "the end of backward for a leaf: adds the gradient that arrives into the leaf's .grad "
        "(sets it, when .grad is None)",
    ),
    "CopySlices": (
        "torch/csrc/autograd/functions/tensor.h",
        "an in-place operation on a view: runs that operation's backward on the view's part "
        "of the base tensor's gradient",
    ),
    "CopyBackwards": (
        "torch/csrc/autograd/functions/tensor.h",
        "Tensor.copy_: passes the gradient to the source, converted to its dtype and device",
    ),
    "GraphRoot": ("torch/csrc/autograd/functions/basic_ops.h", "the engine's starting point: hands out the initial gradients"),
    "Error": ("torch/csrc/autograd/functions/basic_ops.h", "raises an error when backward reaches it"),
    "NotImplemented": ("torch/csrc/autograd/functions/basic_ops.h", "an operation with no derivative: raises when reached"),
    "DelayedError": ("torch/csrc/autograd/functions/basic_ops.h", "raises an error when backward reaches it"),
    "UndefinedGrad": ("torch/csrc/autograd/functions/basic_ops.h", "turns its gradient into an undefined one"),
    "UndefinedGradBackward": ("torch/csrc/autograd/functions/basic_ops.h", "passes undefined gradients on"),
    "Identity": ("torch/csrc/autograd/functions/basic_ops.h", "passes its gradient on unchanged"),
}


def node_entries(infos, lines: Mapping[str, int]) -> dict[str, dict]:
    """Node name -> the derivatives.yaml entry it was generated from."""
    nodes = {}
    for by_dispatch_key in infos.values():
        for info in by_dispatch_key.values():
            op = str(info.func.func.name)
            if info.op is None or (info.op in nodes and op not in lines):
                continue  # no node (nothing differentiable), or a derived copy of an entry we have
            inputs = [binding.name for binding in info.args_with_derivatives]
            position = {name: index for index, name in enumerate(inputs)}
            formulas = sorted(
                (
                    {"inputs": list(derivative.var_names), "formula": derivative.original_formula}
                    for derivative in info.derivatives
                ),
                key=lambda formula: min(position.get(name, len(inputs)) for name in formula["inputs"]),
            )
            nodes[info.op] = {
                "op": op,
                "schema": str(info.func.func),
                "line": lines.get(op),
                "inputs": inputs,
                "formulas": formulas,
            }
    return nodes


def cpp_node_entries() -> dict[str, dict]:
    """Each hand-written C++ node: its header and the line that declares it (read from the installed header)."""
    entries = {}
    for name, (header, _) in CPP_NODES.items():
        line = None
        local = repository_link(header).wheel_copy()
        if local is not None:
            declaration = re.compile(rf"^struct (TORCH_API )?{name}\b")
            for number, text in enumerate(local.read_text(encoding="utf-8").splitlines(), start=1):
                if declaration.match(text):
                    line = number
                    break
        entries[name] = {"header": header, "line": line}
    return entries
