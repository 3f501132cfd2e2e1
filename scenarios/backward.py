"""The backward pass on the study note's graph: a = w + x, b = w + 1, y = a * b.

With w = 1 and x = 2, y.backward() gives dy/dw = b + a = 2 + 3 = 5 and
dy/dx = b = 2 (w.grad is None until then). w feeds two nodes, so its gradient is
the sum of both paths. Backward frees the tensors the nodes saved for it: y's
MulBackward0 saved a and b, so a second backward() through it fails unless the
first one kept them with retain_graph=True, and gradients then accumulate. A
graph that saved no tensor (s = w + x) can be run backward twice without it.
backward() needs a scalar to start from (or gradient=) and a graph to run.

In the debugger: put a breakpoint on `y.backward()` below and press F11 to step
into torch/_tensor.py `Tensor.backward`, then into torch/autograd/__init__.py
`backward`, which hands the graph to the C++ engine (`_engine_run_backward`).
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer

SECOND_BACKWARD_ERROR = "Trying to backward through the graph a second time"
NON_SCALAR_ERROR = "grad can be implicitly created only for scalar outputs"
NO_GRAPH_ERROR = "element 0 of tensors does not require grad and does not have a grad_fn"


@dataclass
class BackwardFacts:
    w_grad_before_backward: float | None  # None: no backward has run yet
    w_grad: float  # dy/dw = b + a
    x_grad: float  # dy/dx = b
    grad_via_a: float  # the path w -> a -> y contributes dy/da * da/dw = b
    grad_via_b: float  # the path w -> b -> y contributes dy/db * db/dw = a
    leaves: dict[str, bool]  # is_leaf of w, x, a, b, y
    grad_fns: dict[str, str]  # grad_fn of a, b, y
    second_backward_error: str  # what a second backward() without retain_graph says
    w_grad_after_two_backwards: float  # with retain_graph=True, gradients add up
    w_grad_after_two_backwards_of_a_sum: float  # s = w + x saved no tensor: twice works, 1 + 1
    non_scalar_error: str  # backward() on a tensor of 3 elements, without gradient=
    no_graph_error: str  # backward() on a tensor that does not require grad


def backward_pass(device: str = "cpu", tracer: Tracer = NO_TRACE) -> BackwardFacts:
    w = torch.tensor(1.0, requires_grad=True, device=device)
    x = torch.tensor(2.0, requires_grad=True, device=device)
    a = w + x
    b = w + 1
    y = a * b

    # Keep the gradients of the two intermediate results, to see both paths into w.
    a.retain_grad()
    b.retain_grad()
    w_grad_before_backward = None if w.grad is None else w.grad.item()  # None: nothing accumulated yet
    with tracer.backward_of({"y": y}, names={"w": w, "x": x, "a": a, "b": b}):
        y.backward()
    w_grad, x_grad = w.grad.item(), x.grad.item()

    try:
        y.backward()  # the graph's saved tensors were freed by the first backward
    except RuntimeError as error:
        second_backward_error = str(error).split(".")[0]
    else:
        raise AssertionError("a second backward() through a freed graph should fail")

    # A new graph, backward twice: retain_graph=True keeps it alive for the second.
    w.grad = None
    y_again = (w + x) * (w + 1)
    y_again.backward(retain_graph=True)
    y_again.backward()
    w_grad_after_two_backwards = w.grad.item()

    # AddBackward0 saves no tensor, so there is nothing to free: backward twice works.
    w.grad = None
    s = w + x
    s.backward()
    s.backward()
    w_grad_after_two_backwards_of_a_sum = w.grad.item()

    # backward() starts from dy/dy = 1, which only a scalar has ...
    try:
        (w * torch.ones(3, device=device)).backward()
    except RuntimeError as error:
        non_scalar_error = str(error)
    else:
        raise AssertionError("backward() of a non-scalar without gradient= should fail")
    # ... and needs a graph: a tensor that does not require grad has none.
    try:
        torch.tensor(3.0, device=device).backward()
    except RuntimeError as error:
        no_graph_error = str(error)
    else:
        raise AssertionError("backward() of a tensor without a graph should fail")

    return BackwardFacts(
        w_grad_before_backward=w_grad_before_backward,
        w_grad=w_grad,
        x_grad=x_grad,
        grad_via_a=a.grad.item() * 1.0,  # da/dw = 1
        grad_via_b=b.grad.item() * 1.0,  # db/dw = 1
        leaves={"w": w.is_leaf, "x": x.is_leaf, "a": a.is_leaf, "b": b.is_leaf, "y": y.is_leaf},
        grad_fns={"a": type(a.grad_fn).__name__, "b": type(b.grad_fn).__name__, "y": type(y.grad_fn).__name__},
        second_backward_error=second_backward_error,
        w_grad_after_two_backwards=w_grad_after_two_backwards,
        w_grad_after_two_backwards_of_a_sum=w_grad_after_two_backwards_of_a_sum,
        non_scalar_error=non_scalar_error,
        no_graph_error=no_graph_error,
    )


def narrate(facts: BackwardFacts) -> Iterator[str]:
    yield "The graph: w = 1, x = 2, a = w + x, b = w + 1, y = a * b"
    yield f"Leaves (is_leaf): {facts.leaves}"
    yield f"Nodes (grad_fn): {facts.grad_fns}"
    yield f"Before backward(), w.grad = {facts.w_grad_before_backward}"
    yield f"dy/dw = b + a                     -> w.grad = {facts.w_grad}"
    yield f"dy/dx = b                         -> x.grad = {facts.x_grad}"
    yield f"w feeds two nodes; the paths add: via a {facts.grad_via_a} + via b {facts.grad_via_b} = {facts.w_grad}"
    yield f"A second y.backward() fails (MulBackward0's saved a and b are freed): RuntimeError: {facts.second_backward_error}"
    yield f"With retain_graph=True, two backward() calls accumulate: w.grad = {facts.w_grad_after_two_backwards}"
    yield (
        "s = w + x saves no tensor, so s.backward() twice works without retain_graph:"
        f" w.grad = {facts.w_grad_after_two_backwards_of_a_sum}"
    )
    yield f"backward() of a non-scalar (w * ones(3)) without gradient= fails: RuntimeError: {facts.non_scalar_error}"
    yield f"backward() of torch.tensor(3.0), which has no graph, fails: RuntimeError: {facts.no_graph_error}"


def main(argv: list[str] | None = None) -> int:
    return run_scenario("backward", backward_pass, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
