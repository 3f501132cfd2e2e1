"""How the autograd engine runs backward, stepped through in Python (traces/mirror/engine.py).

The note's graph again: a = w + x, b = w + 1, y = a * b with w = 1, x = 2.
``engine.backward(y)`` does what ``y.backward()`` does, in torch's own order on
torch's own nodes, but in Python:

1. compute_dependencies counts the edges into each node: w's AccumulateGrad has
   two (from a and from b), every other node one.
2. The ready queue runs the ready node with the highest sequence number first:
   y's MulBackward0, then b's AddBackward0 (made after a's), then a's, then the
   leaves' AccumulateGrad nodes as soon as they are ready.
3. w's input buffer adds what arrives: 3 via b (dy/db = a), then 2 via a
   (dy/da = b): w.grad == 5.
4. validate_outputs sums a gradient down to its input's shape: a Linear layer's
   bias gets a gradient per example ([4, 2]) from AddmmBackward0, and
   validate_outputs sums it over the batch to the bias's shape [2].
5. Tensor hooks run in the engine's order, just before each node.
6. Without retain_graph, a second backward through y fails: its saved tensors
   are gone.

``--trace`` traces the same graph run by torch's C++ engine, whose order the
narrative shows equal to the Python engine's.

In the debugger: put a breakpoint on `engine.backward(y)` in `engine_run` below
and press F11: you land in traces/mirror/engine.py `backward`. F11 on through
`run_backward`, `execute` and `thread_main` into `evaluate_function`: each call is
one node, with `name`, `grads_arriving`, `formula`, `queue_now` and, after
`call_function`, `grads_leaving` in the Variables pane. A breakpoint condition
`name == "MulBackward0"` stops at one node.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer
from traces.mirror import engine


@dataclass
class EngineFacts:
    dependencies: dict[str, int]  # node (named by the tensor it made) -> edges into it
    order: list[str]  # the nodes as the Python engine ran them
    torch_order: list[str]  # the same graph run by torch's C++ engine (seen with node pre-hooks)
    arrivals_at_w: list[float]  # what reached w's input buffer, in order
    w_grad: float
    x_grad: float
    bias_grad_shape_from_node: list[int]  # what AddmmBackward0 returned for the bias
    bias_grad_shape: list[int]  # after validate_outputs
    bias_grad_is_batch_sum: bool  # equal to the per-example gradients summed over the batch
    hook_order: list[str]
    torch_hook_order: list[str]
    second_backward_error: str


def note_graph(device: str):
    w = torch.tensor(1.0, requires_grad=True, device=device)
    x = torch.tensor(2.0, requires_grad=True, device=device)
    a = w + x
    b = w + 1
    y = a * b
    return w, x, a, b, y


def engine_run(device: str = "cpu", tracer: Tracer = NO_TRACE) -> EngineFacts:
    w, x, a, b, y = note_graph(device)
    names = {y.grad_fn: "y", a.grad_fn: "a", b.grad_fn: "b",
             engine.grad_accumulator(w): "w", engine.grad_accumulator(x): "x"}
    dependencies = {names[node]: count for node, count in engine.compute_dependencies(y.grad_fn).items()}

    steps = []
    with engine.watching(steps.append):
        engine.backward(y)  # F11 here: into traces/mirror/engine.py
    order = [names[step.node] for step in steps]
    arrivals_at_w = [step.grads_leaving[0].item() for step in steps if names[step.node] in ("a", "b")]

    # The same graph through torch's C++ engine, for comparison (this is the run --trace
    # shows: the trace's backward view sees nodes through node hooks, which only torch's
    # engine calls).
    w2, x2, a2, b2, y2 = note_graph(device)
    torch_names = {y2.grad_fn: "y", a2.grad_fn: "a", b2.grad_fn: "b",
                   engine.grad_accumulator(w2): "w", engine.grad_accumulator(x2): "x"}
    torch_order: list[str] = []
    handles = [node.register_prehook(lambda g, n=n: torch_order.append(n)) for node, n in torch_names.items()]
    with tracer.backward_of({"y": y2}, names={"w": w2, "x": x2, "a": a2, "b": b2}):
        y2.backward()
    for handle in handles:
        handle.remove()

    # The bias of a Linear layer: AddmmBackward0 returns one gradient per example.
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2, device=device)
    out = layer(torch.randn(4, 3, device=device))
    bias_steps = []
    with engine.watching(lambda step: bias_steps.append(step) if step.name == "AddmmBackward0" else None):
        engine.backward(out, torch.ones_like(out))
    bias_slot = [node for node, _ in bias_steps[0].node.next_functions].index(engine.grad_accumulator(layer.bias))
    bias_grad_shape_from_node = bias_steps[0].shapes_from_node[bias_slot]

    # Hooks fire in the engine's order, each just before its node.
    hook_order = hooks_in_order(engine.backward, device)
    torch_hook_order = hooks_in_order(torch.autograd.backward, device)

    try:
        engine.backward(y)
    except RuntimeError as error:
        second_backward_error = str(error).split(".")[0]
    else:
        raise AssertionError("a second backward through a freed graph should fail")

    return EngineFacts(
        dependencies=dependencies,
        order=order,
        torch_order=torch_order,
        arrivals_at_w=arrivals_at_w,
        w_grad=w.grad.item(),
        x_grad=x.grad.item(),
        bias_grad_shape_from_node=bias_grad_shape_from_node,
        bias_grad_shape=list(layer.bias.grad.shape),
        bias_grad_is_batch_sum=torch.equal(layer.bias.grad, torch.ones(4, 2, device=device).sum(0)),
        hook_order=hook_order,
        torch_hook_order=torch_hook_order,
        second_backward_error=second_backward_error,
    )


def hooks_in_order(backward, device: str) -> list[str]:
    w, x, a, b, y = note_graph(device)
    fired: list[str] = []
    for name, tensor in {"w": w, "x": x, "a": a, "b": b, "y": y}.items():
        tensor.register_hook(lambda grad, name=name: fired.append(name))
    backward(y)
    return fired


def narrate(facts: EngineFacts) -> Iterator[str]:
    yield "The graph: w = 1, x = 2, a = w + x, b = w + 1, y = a * b; engine.backward(y) runs it in Python"
    yield f"compute_dependencies (edges into each node): {facts.dependencies}"
    yield f"Order of the nodes: {', '.join(facts.order)} (torch's C++ engine: {', '.join(facts.torch_order)})"
    first, second = facts.arrivals_at_w
    yield f"w's input buffer adds what arrives: {first} via b, then {second} via a -> w.grad = {facts.w_grad}"
    yield f"x.grad = {facts.x_grad}"
    yield (
        f"validate_outputs: AddmmBackward0 returns the bias gradient as {facts.bias_grad_shape_from_node}, "
        f"summed over the batch to {facts.bias_grad_shape}"
    )
    yield f"Tensor hooks fire in the engine's order: {', '.join(facts.hook_order)} (torch: {', '.join(facts.torch_hook_order)})"
    yield f"A second engine.backward(y) fails (saved tensors freed): RuntimeError: {facts.second_backward_error}"


def main(argv: list[str] | None = None) -> int:
    return run_scenario("engine", engine_run, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
