"""What a node saves for backward: an input, its own output, or only what a gradient needs.

Each backward node keeps the tensors its gradient formula needs, as `_saved_*`
attributes. x.pow(2) needs x (d/dx x^2 = 2x): PowBackward0 saves x itself,
`_saved_self is x`, and the exponent 2. x.exp() needs its result (d/dx e^x = e^x):
ExpBackward0 saves the output, and `_saved_result` equals the output but is not
the same Python object: a new tensor over the same storage (same data_ptr),
made when you read it. w * c, where c needs no gradient, saves only c (dw = c);
w is not needed, and `_saved_self` is None.

A saved tensor changed in place makes backward raise (see in_place.py). The
message tells which kind it was: for a saved output it adds "which is output 0
of Exp" (the node that made it); for a saved input that needs no grad (c in w * c) it has no
such part, so look for the tensor that shape and version describe yourself.

In the debugger: put a breakpoint on `y = (squared + exponential + product).sum()`
and expand `squared` in the Variables pane, then its `grad_fn`: `saved self` is
x (its line reads `leaf · requires_grad`), `saved exponent` is 2; under
`exponential.grad_fn`, `saved result` holds e^x. With --trace, the graph view
lists what each node saved, with the version it was saved at.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer

VERSION_ERROR = "one of the variables needed for gradient computation has been modified by an inplace operation"
OUTPUT_PART = ", which is output 0 of Exp,"  # the node that made it, as torch names it


@dataclass
class SavedFacts:
    saved_attributes: dict[str, list[str]]  # the _saved_* attributes of each node
    pow_saved_self_is_x: bool  # x.pow(2) saved x itself
    pow_saved_exponent: int
    exp_saved_result_equals_output: bool  # x.exp() saved its result ...
    exp_saved_result_is_output: bool  # ... but not as the same Python object ...
    exp_saved_result_shares_storage: bool  # ... a new one over the same storage
    mul_saved_self_is_none: bool  # w * c, c needing no grad: w is not needed
    mul_saved_other_is_c: bool  # ... c is (dw = c)
    x_grad: list[float]  # 2x + e^x
    w_grad: list[float]  # c
    changed_input_error: str  # c (saved, needs no grad) changed in place before backward
    changed_output_error: str  # e = x.exp() changed in place before backward


def version_error(error: RuntimeError) -> str:
    """The version error up to its hint."""
    return str(error).split(" Hint:")[0]


def saved_attributes(node) -> list[str]:
    return [name for name in dir(node) if name.startswith("_saved_")]


def saved_tensors(device: str = "cpu", tracer: Tracer = NO_TRACE) -> SavedFacts:
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    w = torch.tensor([1.0, 1.0, 1.0], requires_grad=True, device=device)
    c = torch.tensor([4.0, 5.0, 6.0], device=device)  # needs no gradient
    squared = x.pow(2)  # PowBackward0 saves x
    exponential = x.exp()  # ExpBackward0 saves its result
    product = w * c  # MulBackward0 saves c only
    y = (squared + exponential + product).sum()

    pow_node, exp_node, mul_node = squared.grad_fn, exponential.grad_fn, product.grad_fn
    saved_result = exp_node._saved_result  # a new Python object each time it is read
    facts = dict(
        saved_attributes={
            "PowBackward0": saved_attributes(pow_node),
            "ExpBackward0": saved_attributes(exp_node),
            "MulBackward0": saved_attributes(mul_node),
        },
        pow_saved_self_is_x=pow_node._saved_self is x,
        pow_saved_exponent=pow_node._saved_exponent,
        exp_saved_result_equals_output=torch.equal(saved_result, exponential),
        exp_saved_result_is_output=saved_result is exponential,
        exp_saved_result_shares_storage=saved_result.data_ptr() == exponential.data_ptr(),
        mul_saved_self_is_none=mul_node._saved_self is None,
        mul_saved_other_is_c=mul_node._saved_other is c,
    )
    del saved_result
    with tracer.backward_of({"y": y}, names={"x": x, "w": w, "c": c}):
        y.backward()
    facts.update(x_grad=x.grad.tolist(), w_grad=w.grad.tolist())

    # A changed saved input that needs no grad: the message names no node.
    product = (w * c).sum()
    c.add_(1)
    try:
        product.backward()
    except RuntimeError as error:
        changed_input_error = version_error(error)
    else:
        raise AssertionError("backward after changing a saved input should fail")

    # A changed saved output: the message names the node that made it.
    exponential = x.exp()
    total = exponential.sum()
    exponential.add_(1)
    try:
        total.backward()
    except RuntimeError as error:
        changed_output_error = version_error(error)
    else:
        raise AssertionError("backward after changing a saved output should fail")

    return SavedFacts(
        **facts,
        changed_input_error=changed_input_error,
        changed_output_error=changed_output_error,
    )


def narrate(facts: SavedFacts) -> Iterator[str]:
    yield "x = [1, 2, 3], w = [1, 1, 1] (both require grad), c = [4, 5, 6] (does not)"
    yield "squared = x.pow(2), exponential = x.exp(), product = w * c, y = (squared + exponential + product).sum()"
    yield f"What each node saved (its _saved_* attributes): {facts.saved_attributes}"
    yield (
        f"PowBackward0 saved x itself: _saved_self is x = {facts.pow_saved_self_is_x},"
        f" _saved_exponent = {facts.pow_saved_exponent}  (d/dx x^2 = 2x needs x)"
    )
    yield (
        f"ExpBackward0 saved its output: _saved_result equals exponential = {facts.exp_saved_result_equals_output},"
        f" is exponential = {facts.exp_saved_result_is_output},"
        f" same storage = {facts.exp_saved_result_shares_storage}  (d/dx e^x = e^x needs the result)"
    )
    yield (
        f"MulBackward0 of w * c saved only c: _saved_self is None = {facts.mul_saved_self_is_none},"
        f" _saved_other is c = {facts.mul_saved_other_is_c}  (dy/dw = c; c needs no gradient, so w is not kept)"
    )
    yield f"backward: x.grad = {[round(value, 4) for value in facts.x_grad]}  (2x + e^x), w.grad = {facts.w_grad}  (c)"
    yield f"c.add_(1) before backward of (w * c).sum(), c a saved input: RuntimeError: {facts.changed_input_error}"
    yield f"exponential.add_(1) before backward, a saved output: RuntimeError: {facts.changed_output_error}"


def main(argv: list[str] | None = None) -> int:
    return run_scenario("saved_tensors", saved_tensors, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
