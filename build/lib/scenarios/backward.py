"""The backward pass on the study note's graph: a = w + x, b = w + 1, y = a * b.

With w = 1 and x = 2, y.backward() gives dy/dw = b + a = 2 + 3 = 5 and
dy/dx = b = 2. w feeds two nodes, so its gradient is the sum of both paths.
Backward frees the graph's saved tensors: a second backward() fails unless the
first one kept them with retain_graph=True, and gradients then accumulate.

In the debugger: put a breakpoint on `y.backward()` below and press F11 to step
into torch/_tensor.py `Tensor.backward`, then into torch/autograd/__init__.py
`backward`, which hands the graph to the C++ engine (`_engine_run_backward`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer

SECOND_BACKWARD_ERROR = "Trying to backward through the graph a second time"


@dataclass
class BackwardFacts:
    w_grad: float  # dy/dw = b + a
    x_grad: float  # dy/dx = b
    grad_via_a: float  # the path w -> a -> y contributes dy/da * da/dw = b
    grad_via_b: float  # the path w -> b -> y contributes dy/db * db/dw = a
    leaves: dict[str, bool]  # is_leaf of w, x, a, b, y
    grad_fns: dict[str, str]  # grad_fn of a, b, y
    second_backward_error: str  # what a second backward() without retain_graph says
    w_grad_after_two_backwards: float  # with retain_graph=True, gradients add up


def backward_pass(device: str = "cpu", tracer: Tracer = NO_TRACE) -> BackwardFacts:
    w = torch.tensor(1.0, requires_grad=True, device=device)
    x = torch.tensor(2.0, requires_grad=True, device=device)
    a = w + x
    b = w + 1
    y = a * b

    # Keep the gradients of the two intermediate results, to see both paths into w.
    a.retain_grad()
    b.retain_grad()
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

    return BackwardFacts(
        w_grad=w_grad,
        x_grad=x_grad,
        grad_via_a=a.grad.item() * 1.0,  # da/dw = 1
        grad_via_b=b.grad.item() * 1.0,  # db/dw = 1
        leaves={"w": w.is_leaf, "x": x.is_leaf, "a": a.is_leaf, "b": b.is_leaf, "y": y.is_leaf},
        grad_fns={"a": type(a.grad_fn).__name__, "b": type(b.grad_fn).__name__, "y": type(y.grad_fn).__name__},
        second_backward_error=second_backward_error,
        w_grad_after_two_backwards=w.grad.item(),
    )


def narrate(facts: BackwardFacts) -> Iterator[str]:
    yield "The graph: w = 1, x = 2, a = w + x, b = w + 1, y = a * b"
    yield f"Leaves (is_leaf): {facts.leaves}"
    yield f"Nodes (grad_fn): {facts.grad_fns}"
    yield f"dy/dw = b + a                     -> w.grad = {facts.w_grad}"
    yield f"dy/dx = b                         -> x.grad = {facts.x_grad}"
    yield f"w feeds two nodes; the paths add: via a {facts.grad_via_a} + via b {facts.grad_via_b} = {facts.w_grad}"
    yield f"A second backward() fails: RuntimeError: {facts.second_backward_error}"
    yield f"With retain_graph=True, two backward() calls accumulate: w.grad = {facts.w_grad_after_two_backwards}"


def main(argv: list[str] | None = None) -> int:
    return run_scenario("backward", backward_pass, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
