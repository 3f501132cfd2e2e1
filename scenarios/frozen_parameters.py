"""Frozen parameters: fine-tuning only the last layer of the quickstart's model.

Fine-tuning often trains only the head of a model: requires_grad_(False) on the
other parameters freezes them. A frozen parameter is still a leaf, but autograd
records nothing for it: its layer's addmm gets no gradient path to it, and when
nothing before the head requires grad, the first two layers record no node at
all. So backward gives the frozen parameters no `.grad` (it stays None), their
AccumulateGrad nodes do not exist, and the graph is much smaller (--trace shows
6 nodes where the whole model's step has 16). The optimizer may still hold them
(SGD(model.parameters())): it skips every parameter whose .grad is None, so they
stay unchanged, bit for bit, while the head moves.

In the debugger: put a breakpoint on `loss.backward()`, and in the Variables pane
expand `loss`, its `grad_fn`, and walk `next_functions` down: only the head's
`AccumulateGrad for Parameter[10, 512]` and `[10]` are there. Then step into
`optimizer.step()` and on to torch/optim/sgd.py `SGD._init_group`, where
`if p.grad is not None` leaves the frozen parameters out.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from scenarios._fashion import NeuralNetwork
from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer, walk_graph

HEAD = "linear_relu_stack.4"  # the last Linear(512, 10): the one layer fine-tuned here
LR = 0.1


@dataclass
class FrozenFacts:
    requires_grad: dict[str, bool]  # per parameter, after freezing all but the head
    still_leaves: bool  # every parameter is a leaf, frozen or not
    graph_nodes_whole: dict[str, int]  # the loss's graph with nothing frozen
    graph_nodes_frozen: dict[str, int]  # ... and with only the head trainable
    leaves_in_graph: list[str]  # the parameters behind AccumulateGrad nodes
    grad_is_none: dict[str, bool]  # after backward
    unchanged_by_step: dict[str, bool]  # after optimizer.step() on SGD(model.parameters())
    loss_before_and_after: list[float]  # the head alone still lowers the loss on this batch


def loss_graph(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Counter]:
    loss = nn.functional.cross_entropy(model(X), y)
    graph = walk_graph({"loss": loss}, names=dict(model.named_parameters()))
    return loss, graph


def frozen_parameters(device: str = "cpu", tracer: Tracer = NO_TRACE) -> FrozenFacts:
    model = NeuralNetwork().to(device)
    X = torch.rand(8, 1, 28, 28, device=device)  # a batch of 8 images (random: the data is not the lesson)
    y = torch.arange(8, device=device) % 10
    parameters = dict(model.named_parameters())

    _, whole = loss_graph(model, X, y)  # nothing frozen yet

    for name, parameter in parameters.items():
        if not name.startswith(HEAD + "."):
            parameter.requires_grad_(False)  # frozen: a leaf that needs no gradient
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)  # frozen ones included, as is common
    before = {name: p.detach().clone() for name, p in parameters.items()}

    loss, frozen = loss_graph(model, X, y)
    with tracer.backward_of({"loss": loss}, names=parameters):
        loss.backward()
    grad_is_none = {name: p.grad is None for name, p in parameters.items()}
    optimizer.step()
    with torch.no_grad():
        loss_after = nn.functional.cross_entropy(model(X), y).item()

    return FrozenFacts(
        requires_grad={name: p.requires_grad for name, p in parameters.items()},
        still_leaves=all(p.is_leaf for p in parameters.values()),
        graph_nodes_whole=dict(Counter(node.name for node in whole.nodes)),
        graph_nodes_frozen=dict(Counter(node.name for node in frozen.nodes)),
        leaves_in_graph=[node.variable for node in frozen.nodes if node.is_leaf],
        grad_is_none=grad_is_none,
        unchanged_by_step={name: torch.equal(p.detach(), before[name]) for name, p in parameters.items()},
        loss_before_and_after=[round(loss.item(), 4), round(loss_after, 4)],
    )


def narrate(facts: FrozenFacts) -> Iterator[str]:
    yield f"The quickstart's model; every parameter but {HEAD}'s: requires_grad_(False)"
    yield f"requires_grad: {facts.requires_grad}"
    yield f"Frozen or not, every parameter is a leaf: {facts.still_leaves}"
    whole, frozen = facts.graph_nodes_whole, facts.graph_nodes_frozen
    yield f"The loss's graph, nothing frozen: {sum(whole.values())} nodes {whole}"
    yield f"The loss's graph, head only: {sum(frozen.values())} nodes {frozen}"
    yield f"AccumulateGrad nodes now: {facts.leaves_in_graph}  (none for a frozen parameter)"
    yield f"After loss.backward(), .grad is None: {facts.grad_is_none}"
    yield f"After optimizer.step() with SGD(model.parameters()), unchanged: {facts.unchanged_by_step}"
    before, after = facts.loss_before_and_after
    yield f"Training the head alone still lowers the loss on this batch: {before} -> {after}"


def main(argv: list[str] | None = None) -> int:
    return run_scenario("frozen_parameters", frozen_parameters, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
