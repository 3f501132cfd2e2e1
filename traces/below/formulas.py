"""What computes an autograd node's gradients: its ``derivatives.yaml`` formulas, as equations.

Reads the index's entries of ``tools/autograd/derivatives.yaml`` (``nodes.py``
says where they come from): for a node such as ``MulBackward0``, the ATen
operator it belongs to and, per input, the formula that computes its gradient.
``node_derivative`` describes any node a trace meets (a formula, C++ written by
hand, a custom ``torch.autograd.Function``, a ``torch.compile`` region), and
``gradient_equations`` writes the formulas of a node that ran in backward with
the trace's names and numbers: ``grad_a = grad * b = 1 * 2 = 2``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from traces.below.cache import Index, installed_index
from traces.below.links import SourceLink, repository_link
from traces.below.nodes import CPP_NODES, DERIVATIVES_YAML

# Some formulas call helpers defined in C++ (torch/csrc/autograd/FunctionsManual.cpp,
# not in the wheel). For the common ones, what they compute for real tensors, in
# plain terms. Keyed by the exact text in derivatives.yaml, so a formula that
# changes in a later torch simply loses its plain form; tests/test_native.py
# checks that every key is still a formula of the installed torch.
PLAIN_FORMULAS = {
    "mul_tensor_backward(grad, other, self.scalar_type())": "grad * other",
    "mul_tensor_backward(grad, self, other.scalar_type())": "grad * self",
    "handle_r_to_c(self.scalar_type(), grad)": "grad",
    "handle_r_to_c(other.scalar_type(), maybe_multiply(grad, alpha.conj()))": "grad * alpha",
    "handle_r_to_c(other.scalar_type(), maybe_multiply(-grad, alpha.conj()))": "-grad * alpha",
    "div_tensor_self_backward(grad, other, self.scalar_type())": "grad / other",
    "div_tensor_other_backward(grad, self, other)": "-grad * self / other**2",
    "threshold_backward(grad, result, 0)": "grad * (result > 0)",
    "maybe_multiply(grad, beta.conj())": "grad * beta",
    "mm_mat1_backward(grad, mat2, mat1.sym_sizes(), mat1.sym_strides(), mat1.layout(), alpha)": "alpha * (grad @ mat2.T)",
    "mm_mat2_backward(grad, mat1, mat2.sym_sizes(), mat2.sym_strides(), mat2.layout(), alpha)": "alpha * (mat1.T @ grad)",
    "_log_softmax_backward_data(grad, result, dim, self.scalar_type())": "grad - exp(result) * grad.sum(dim, keepdim=True)",
}


@dataclass
class Formula:
    inputs: list[str]  # the inputs whose gradient it computes, e.g. ["self"]
    formula: str  # as derivatives.yaml writes it
    plain: str | None = None  # the same in plain terms, for real tensors, where known


@dataclass
class NodeDerivative:
    """What computes an autograd node's gradients.

    ``kind`` is ``"formula"`` for a node generated from derivatives.yaml,
    ``"c++"`` for one written by hand in C++ (AccumulateGrad, CopySlices, ...),
    ``"custom"`` for a ``torch.autograd.Function`` written in Python,
    ``"compiled"`` for the backward of a ``torch.compile`` region, and
    ``"unknown"`` for anything else; ``summary`` says it in one line.
    """

    kind: str
    summary: str
    op: str | None = None  # the ATen operator whose entry it is, e.g. "mul.Tensor"
    schema: str | None = None
    inputs: list[str] = field(default_factory=list)  # in the order of the node's next_functions
    formulas: list[Formula] = field(default_factory=list)
    source: SourceLink | None = None

    def formula_for(self, name: str) -> Formula | None:
        return next((formula for formula in self.formulas if name in formula.inputs), None)


def node_derivative(name: str, index: Index | None = None) -> NodeDerivative:
    """Describe the node class ``name`` ("MulBackward0", "AccumulateGrad", ...)."""
    index = index if index is not None else installed_index()
    entry = index.nodes.get(name)
    if entry is not None:
        return NodeDerivative(
            kind="formula",
            summary=f"derivatives.yaml entry of {entry['schema']}",
            op=entry["op"],
            schema=entry["schema"],
            inputs=list(entry["inputs"]),
            formulas=[
                Formula(list(f["inputs"]), f["formula"], PLAIN_FORMULAS.get(f["formula"])) for f in entry["formulas"]
            ],
            source=repository_link(DERIVATIVES_YAML, entry["line"]),
        )
    if name in CPP_NODES:
        header, description = CPP_NODES[name]
        line = index.cpp_nodes.get(name, {}).get("line")  # the cache keeps where, CPP_NODES says what
        return NodeDerivative("c++", f"written in C++, no formula: {description}", source=repository_link(header, line))
    if name == "CompiledFunctionBackward":
        return NodeDerivative(
            "compiled",
            "the backward of a torch.compile region: one node for the whole compiled graph, "
            "whose gradient code AOTAutograd traced ahead of time (no per-op formulas here)",
        )
    if name.endswith("Backward") and name != "Backward":
        return NodeDerivative(
            "custom",
            f"a custom torch.autograd.Function ({name.removesuffix('Backward')}): its backward() is Python "
            "code you can set a breakpoint in",
        )
    if index.problem:
        return NodeDerivative("unknown", f"no formula: the formula index is unavailable ({index.problem})")
    return NodeDerivative("unknown", "not in derivatives.yaml: a node defined in C++ by torch or an extension")


def slot_names(derivative: NodeDerivative, slots: int) -> list[str]:
    """The input each of a node's next_functions slots is for ("self", "other", "tensors[1]", ...)."""
    inputs = derivative.inputs
    if len(inputs) == slots:
        return list(inputs)
    if len(inputs) == 1:  # one list input (cat's tensors): a slot per tensor
        return [f"{inputs[0]}[{index}]" for index in range(slots)]
    return [f"input {index}" for index in range(slots)]


IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?![\w(])")  # a name, not a method or function called


def gradient_text(summary) -> str | None:
    """A gradient (a ``TensorSummary``) in an equation: its numbers when small, else dtype[shape]."""
    if summary is None:
        return None
    if summary.values is not None and (not isinstance(summary.values, list) or len(summary.values) <= 4):
        return str(summary)
    return f"{summary.dtype}{list(summary.shape)}"


def saved_text(saved) -> str | None:
    """A saved value (a ``SavedValue``) in an equation: its numbers when small, else dtype[shape]."""
    if saved.shape is not None:
        if saved.values is not None and (not isinstance(saved.values, list) or len(saved.values) <= 4):
            return format_values(saved.values)
        return f"{saved.dtype}{list(saved.shape)}"
    return saved.value  # a scalar or size, as text; None if freed before it was read


def format_values(values) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(format_values(v) for v in values) + "]"
    if isinstance(values, float):
        return f"{values:.4g}"
    return str(values)


def gradient_equations(
    derivative: NodeDerivative, node, step, slot_targets: Mapping[int, str | None], not_asked: Mapping[int, str] | None = None
) -> list[str]:
    """One line per input of a node that ran in backward: its formula, with names and numbers.

    ``node`` is the ``AutogradNode`` (its saved values and variable name),
    ``step`` the ``BackwardStep`` (the gradients arriving and leaving), and
    ``slot_targets`` the variable name at the end of each edge slot, where
    known; ``not_asked`` the slots whose gradient the call did not ask for, with why
    (``AutogradGraph.not_asked``). For ``y = a * b``: ``grad_a = grad * b = 1 * 2 = 2``.
    """
    not_asked = not_asked or {}
    arriving = gradient_text(step.arriving[0]) if step.arriving else None
    if derivative.kind == "c++" and node.is_leaf:
        return [f"{node.variable or 'leaf'}.grad += {arriving}"] if arriving else []
    if derivative.kind != "formula":
        return []
    names = slot_names(derivative, len(step.leaving))
    variables = {name: slot_targets.get(slot) for slot, name in enumerate(names)}
    variables["result"] = node.variable
    values = {saved.name: saved_text(saved) for saved in node.saved}
    values["grad"] = arriving
    lines = []
    first_left: dict[int, str] = {}  # a formula that computes several gradients at once is written once
    for slot, name in enumerate(names):
        left = f"grad_{slot_targets.get(slot) or name}"
        if step.leaving[slot] is None:
            lines.append(f"{left}: none ({not_asked.get(slot, 'this input needs no gradient')})")
            continue
        formula = derivative.formula_for(name.split("[")[0])
        if formula is None:
            continue
        result = gradient_text(step.leaving[slot])
        if id(formula) in first_left:
            lines.append(f"{left} = (the formula of {first_left[id(formula)]}) = {result}")
            continue
        first_left[id(formula)] = left
        line = equation(left, formula, variables, values, result)
        lines.append(line + broadcast_note(formula, step.arriving[0] if step.arriving else None, step.leaving[slot]))
    return lines


# Plain formulas that keep the shape of ``grad``: when the gradient that leaves
# has another shape, the input was broadcast in forward, and autograd summed the
# gradient back over the broadcast dimensions (as it does for every broadcast input).
ELEMENTWISE_PLAIN_FORMULAS = {
    "grad", "grad * other", "grad * self", "grad * alpha", "-grad * alpha", "grad * beta", "grad / other",
    "-grad * self / other**2", "grad * (result > 0)",
}  # fmt: skip


def broadcast_note(formula: Formula, arriving, leaving) -> str:
    if formula.plain not in ELEMENTWISE_PLAIN_FORMULAS or arriving is None or leaving is None:
        return ""
    if list(arriving.shape) == list(leaving.shape):
        return ""
    return " (summed over the dimensions broadcasting added in forward)"


LONGEST_FORMULA = 80  # characters of a formula in an equation (C++ formulas can run to hundreds)


def equation(
    left: str,
    formula: Formula,
    variables: Mapping[str, str | None],
    values: Mapping[str, str | None],
    result: str | None,
) -> str:
    """``left = formula [= the formula with numbers] = result``; the numbers only for a plain formula.
    A long formula with no plain form is cut short: the graph view and the JSON have it whole."""
    if formula.plain is None:
        written = formula.formula
        parts = [written if len(written) <= LONGEST_FORMULA else written[: LONGEST_FORMULA - 2] + " …"]
    else:
        parts = [IDENTIFIER.sub(lambda m: variables.get(m.group()) or m.group(), formula.plain)]
        used = {name for name in IDENTIFIER.findall(formula.plain) if name in variables or name in values}
        if used and all(values.get(name) is not None for name in used):
            parts.append(IDENTIFIER.sub(lambda m: values[m.group()] if m.group() in used else m.group(), formula.plain))
    if result is not None:
        parts.append(result)
    shown = [part for index, part in enumerate(parts) if index == 0 or part != parts[index - 1]]
    return " = ".join([left, *shown])
