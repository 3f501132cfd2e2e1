"""One training step of the quickstart's model on one batch, phase by phase.

Forward computes the logits, the loss records its graph, backward fills every
parameter's .grad, optimizer.step() moves each parameter by exactly -lr * grad,
and optimizer.zero_grad() sets every .grad back to None (set_to_none=True is the
default of both Optimizer.zero_grad and Module.zero_grad; set_to_none=False keeps
the tensors and fills them with zeros). The input batch does not require grad, so
Flatten (a view of it) leaves no node in the graph. Not recording a graph is a
grad mode's business, not the module's: after model.eval(), autograd still
records the forward; torch.no_grad() is what stops it.

In the debugger: each phase below is one line. F11 on `optimizer.step()` lands
in torch's wrapper around every optimizer's step (torch/optim/optimizer.py
`wrapper`), not in `SGD.step`: add a function breakpoint named `step` (or
`_single_tensor_sgd`) and continue (F5) to reach torch/optim/sgd.py and
`param.add_(grad, alpha=-lr)`.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

import argparse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

# Imported before the lesson runs, so that torchvision's own import (which loads
# much of torch) stays out of --trace's ops and source views.
import torchvision  # noqa: F401
from torch import nn
from torch.utils.data import DataLoader

from scenarios._fashion import (
    NeuralNetwork,
    load_fashion_mnist,
)
from scenarios._runner import folder, positive_number, run_scenario, whole_number
from traces import NO_TRACE, Tracer, walk_graph

STEPS = 5  # steps on the same batch, to watch the loss go down


@dataclass
class TrainingStepFacts:
    data: str  # where the batch came from
    batch: dict[str, str]  # shape and dtype of X and y
    input_requires_grad: bool  # X.requires_grad
    logits_shape: list[int]
    loss: float  # the loss before the step
    graph_nodes: dict[str, int]  # node name -> how many the loss's graph has
    graph_leaves: list[str]  # the parameters behind the AccumulateGrad nodes
    nodes_added_if_input_required_grad: list[str]  # what Flatten would record then
    grad_shapes: dict[str, list[int]]  # each parameter's .grad after backward
    lr: float
    moved_by_exactly_minus_lr_grad: dict[str, bool]  # after == before.add(grad, alpha=-lr), bit for bit
    two_step_arithmetic_difference: float  # largest |after - (before - lr * grad)|: two roundings, not one
    grads_none_after_zero_grad: dict[str, bool]
    losses_on_same_batch: list[float]  # the loss before each of STEPS steps, and after the last
    grads_zero_after_zero_grad_keeping_tensors: dict[str, bool]  # optimizer.zero_grad(set_to_none=False)
    grads_none_after_module_zero_grad: dict[str, bool]  # model.zero_grad()
    grad_fn_after_eval: str | None  # model.eval(); model(X).grad_fn: still recorded
    grad_fn_under_no_grad: str | None  # with torch.no_grad(): model(X).grad_fn: None


def training_step(
    device: str = "cpu",
    tracer: Tracer = NO_TRACE,
    data: Path = Path("data"),
    batch_size: int = 64,
    lr: float = 1e-3,
) -> TrainingStepFacts:
    fashion = load_fashion_mnist(data)
    X, y = next(iter(DataLoader(fashion.training_data, batch_size=batch_size)))
    X, y = X.to(device), y.to(device)

    model = NeuralNetwork().to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    parameters = dict(model.named_parameters())
    before = {name: p.detach().clone() for name, p in parameters.items()}

    # 1. Forward: the logits, one row of 10 per image.
    pred = model(X)

    # 2. Loss: CrossEntropyLoss is log_softmax then nll_loss, so both nodes appear.
    loss = loss_fn(pred, y)
    graph = walk_graph({"loss": loss}, names=parameters)

    # 3. Backward: fills .grad of every parameter.
    with tracer.backward_of({"loss": loss}, names=parameters):
        loss.backward()
    grads = {name: p.grad.clone() for name, p in parameters.items()}

    # 4. optimizer.step(): under no_grad, each parameter p.add_(p.grad, alpha=-lr).
    optimizer.step()

    # 5. optimizer.zero_grad(): set_to_none=True by default, so .grad becomes None.
    optimizer.zero_grad()

    grads_none = {name: p.grad is None for name, p in parameters.items()}
    after = {name: p.detach() for name, p in parameters.items()}
    moved = {name: torch.equal(after[name], before[name].add(grads[name], alpha=-lr)) for name in after}
    two_step = max((after[name] - (before[name] - lr * grads[name])).abs().max().item() for name in after)

    # A few more steps on the same batch: the loss goes down.
    losses = [loss.item()]
    for _ in range(STEPS - 1):
        step_loss = loss_fn(model(X), y)
        step_loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(step_loss.item())
    with torch.no_grad():
        losses.append(loss_fn(model(X), y).item())

    # zero_grad(set_to_none=False) keeps each .grad tensor and fills it with zeros;
    # model.zero_grad() has the same default as the optimizer's: None.
    loss_fn(model(X), y).backward()
    optimizer.zero_grad(set_to_none=False)
    zeros = {name: p.grad is not None and not p.grad.any().item() for name, p in parameters.items()}
    model.zero_grad()
    none_after_module_zero_grad = {name: p.grad is None for name, p in parameters.items()}

    # Evaluation mode is not a grad mode: model.eval() alone still records the graph.
    model.eval()
    recorded_in_eval = model(X).grad_fn
    with torch.no_grad():
        recorded_under_no_grad = model(X).grad_fn
    model.train()

    # Were X to require grad, flatten(X) would be recorded too.
    input_needing_grad = X.detach().clone().requires_grad_()
    graph_then = walk_graph({"loss": loss_fn(model(input_needing_grad), y)})
    added = Counter(node.name for node in graph_then.nodes) - Counter(node.name for node in graph.nodes)

    return TrainingStepFacts(
        data=fashion.describe(),
        batch={"X": f"{list(X.shape)} {X.dtype}", "y": f"{list(y.shape)} {y.dtype}"},
        input_requires_grad=X.requires_grad,
        logits_shape=list(pred.shape),
        loss=loss.item(),
        graph_nodes=dict(Counter(node.name for node in graph.nodes)),
        graph_leaves=[node.variable for node in graph.nodes if node.is_leaf],
        nodes_added_if_input_required_grad=sorted(added.elements()),
        grad_shapes={name: list(grad.shape) for name, grad in grads.items()},
        lr=lr,
        moved_by_exactly_minus_lr_grad=moved,
        two_step_arithmetic_difference=two_step,
        grads_none_after_zero_grad=grads_none,
        losses_on_same_batch=losses,
        grads_zero_after_zero_grad_keeping_tensors=zeros,
        grads_none_after_module_zero_grad=none_after_module_zero_grad,
        grad_fn_after_eval=node_name(recorded_in_eval),
        grad_fn_under_no_grad=node_name(recorded_under_no_grad),
    )


def node_name(grad_fn) -> str | None:
    return None if grad_fn is None else type(grad_fn).__name__


def narrate(facts: TrainingStepFacts) -> Iterator[str]:
    yield facts.data
    yield f"One batch: X {facts.batch['X']} (requires_grad = {facts.input_requires_grad}), y {facts.batch['y']}"
    yield f"1. Forward: pred = model(X) has shape {facts.logits_shape}"
    yield f"2. Loss: loss = loss_fn(pred, y) = {facts.loss:.6f}"
    yield "   The loss's graph: " + ", ".join(f"{name} x{count}" for name, count in facts.graph_nodes.items())
    yield f"   AccumulateGrad nodes, one per parameter: {', '.join(facts.graph_leaves)}"
    added = ", ".join(facts.nodes_added_if_input_required_grad)
    yield (
        f"   No node for Flatten: X.requires_grad = {facts.input_requires_grad}, so flattening X records nothing"
        f" (an X that required grad would add {added})"
    )
    shapes = ", ".join(f"{name} {shape}" for name, shape in facts.grad_shapes.items())
    yield f"3. Backward: loss.backward() filled every parameter's .grad: {shapes}"
    moved = facts.moved_by_exactly_minus_lr_grad
    yield (
        f"4. optimizer.step(): each parameter moved by exactly -lr * grad (lr = {facts.lr}), checked against a copy"
        f" taken before the step: after == before.add(grad, alpha=-lr) bit for bit for"
        f" {sum(moved.values())} of {len(moved)} parameters"
    )
    yield (
        "   (before - lr * grad in two operations rounds twice and differs by up to"
        f" {facts.two_step_arithmetic_difference:.3g})"
    )
    none = facts.grads_none_after_zero_grad
    yield f"5. optimizer.zero_grad(): .grad is None (set_to_none=True) for {sum(none.values())} of {len(none)} parameters"
    losses = facts.losses_on_same_batch
    yield (
        f"The loss on the same batch before each of {STEPS} steps and after: "
        + " -> ".join(f"{value:.6f}" for value in losses)
        + f"; lower after the steps: {losses[-1] < losses[0]}"
    )
    zeros, none = facts.grads_zero_after_zero_grad_keeping_tensors, facts.grads_none_after_module_zero_grad
    yield (
        f"After one more backward: optimizer.zero_grad(set_to_none=False) leaves .grad tensors of zeros for"
        f" {sum(zeros.values())} of {len(zeros)} parameters; model.zero_grad() (set_to_none=True too) leaves .grad"
        f" None for {sum(none.values())} of {len(none)}"
    )
    yield (
        f"model.eval() alone still records: model(X).grad_fn = {facts.grad_fn_after_eval};"
        f" under torch.no_grad(): model(X).grad_fn = {facts.grad_fn_under_no_grad}"
    )


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=folder, default=Path("data"), metavar="DIR", help="the data folder (default: data)"
    )
    parser.add_argument("--batch-size", type=whole_number(1), default=64, metavar="N", help="batch size (default: 64)")
    parser.add_argument(
        "--lr", type=positive_number, default=1e-3, metavar="RATE", help="SGD learning rate (default: 1e-3)"
    )


def main(argv: list[str] | None = None) -> int:
    return run_scenario("training_step", training_step, narrate, doc=__doc__, add_options=add_options, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
