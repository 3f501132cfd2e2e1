"""Frozen parameters: no .grad, no AccumulateGrad node, unchanged by the optimizer; a smaller graph."""

import pytest
import torch
from conftest import run_main

from scenarios.frozen_parameters import HEAD, frozen_parameters
from traces import Tracer

NAMES = [f"linear_relu_stack.{layer}.{kind}" for layer in (0, 2, 4) for kind in ("weight", "bias")]
FROZEN = {name: not name.startswith(HEAD + ".") for name in NAMES}


@pytest.fixture(scope="module")
def traced():
    torch.manual_seed(0)
    tracer = Tracer()
    facts = frozen_parameters(tracer=tracer)
    return facts, tracer.trace("frozen_parameters", "cpu", facts)


@pytest.fixture(scope="module")
def facts(traced):
    return traced[0]


def test_only_the_head_requires_grad_and_every_parameter_stays_a_leaf(facts):
    assert facts.requires_grad == {name: not frozen for name, frozen in FROZEN.items()}
    assert facts.still_leaves is True


def test_freezing_all_but_the_head_shrinks_the_graph_from_16_nodes_to_6(facts):
    assert facts.graph_nodes_whole == {
        "NllLossBackward0": 1, "LogSoftmaxBackward0": 1, "AddmmBackward0": 3, "AccumulateGrad": 6,
        "ReluBackward0": 2, "TBackward0": 3,
    }  # fmt: skip
    assert facts.graph_nodes_frozen == {
        "NllLossBackward0": 1, "LogSoftmaxBackward0": 1, "AddmmBackward0": 1, "AccumulateGrad": 2, "TBackward0": 1,
    }  # fmt: skip


def test_a_frozen_parameter_has_no_accumulate_grad_node(facts):
    assert facts.leaves_in_graph == ["linear_relu_stack.4.bias", "linear_relu_stack.4.weight"]


def test_a_frozen_parameter_gets_no_grad(facts):
    assert facts.grad_is_none == FROZEN


def test_the_optimizer_leaves_frozen_parameters_unchanged_and_moves_the_head(facts):
    assert facts.unchanged_by_step == FROZEN
    before, after = facts.loss_before_and_after
    assert after < before


def test_the_trace_shows_the_smaller_graph(traced):
    _, trace = traced
    names = sorted(node.name for node in trace.graph.nodes)
    assert names == sorted(["NllLossBackward0", "LogSoftmaxBackward0", "AddmmBackward0", "TBackward0"]
                           + ["AccumulateGrad"] * 2)  # fmt: skip
    assert sorted(node.variable for node in trace.graph.nodes if node.is_leaf) == [
        "linear_relu_stack.4.bias", "linear_relu_stack.4.weight",
    ]  # fmt: skip


def test_the_narrative_states_each_fact_with_its_value(monkeypatch, capsys):
    facts, lines = run_main("frozen_parameters", [], monkeypatch, capsys)
    before, after = facts.loss_before_and_after
    assert after < before
    assert lines == [
        "The quickstart's model; every parameter but linear_relu_stack.4's: requires_grad_(False)",
        f"requires_grad: { {name: not frozen for name, frozen in FROZEN.items()} }",
        "Frozen or not, every parameter is a leaf: True",
        "The loss's graph, nothing frozen: 16 nodes {'NllLossBackward0': 1, 'LogSoftmaxBackward0': 1,"
        " 'AddmmBackward0': 3, 'AccumulateGrad': 6, 'ReluBackward0': 2, 'TBackward0': 3}",
        "The loss's graph, head only: 6 nodes {'NllLossBackward0': 1, 'LogSoftmaxBackward0': 1,"
        " 'AddmmBackward0': 1, 'AccumulateGrad': 2, 'TBackward0': 1}",
        "AccumulateGrad nodes now: ['linear_relu_stack.4.bias', 'linear_relu_stack.4.weight']"
        "  (none for a frozen parameter)",
        f"After loss.backward(), .grad is None: {FROZEN}",
        f"After optimizer.step() with SGD(model.parameters()), unchanged: {FROZEN}",
        f"Training the head alone still lowers the loss on this batch: {before} -> {after}",
    ]


def test_sgd_skips_every_parameter_without_a_grad_on_the_breakpoint_line(monkeypatch):
    # The README's breakpoint: torch/optim/sgd.py SGD._init_group, `if p.grad is not None:`.
    import inspect

    assert "            if p.grad is not None:\n" in inspect.getsource(torch.optim.SGD._init_group)
    seen = []
    real_init_group = torch.optim.SGD._init_group

    def watched(self, group, params, grads, momentum_buffer_list):
        visited = [(list(p.shape), p.grad is None) for p in group["params"]]
        result = real_init_group(self, group, params, grads, momentum_buffer_list)
        seen.append((visited, [list(p.shape) for p in params]))
        return result

    monkeypatch.setattr(torch.optim.SGD, "_init_group", watched)
    torch.manual_seed(0)
    frozen_parameters()
    assert seen == [(
        [([512, 784], True), ([512], True), ([512, 512], True), ([512], True), ([10, 512], False), ([10], False)],
        [[10, 512], [10]],
    )]  # fmt: skip
