"""One training step of the quickstart's model, phase by phase."""

import inspect

import pytest
import torch

from conftest import run_main
from engine_order import EngineOrderWitness
from scenarios._fashion import NeuralNetwork
from scenarios.training_step import STEPS, training_step

PARAMETERS = [name for name, _ in NeuralNetwork().named_parameters()]


@pytest.fixture(scope="module")
def witnessed(fashion_data):
    witness = EngineOrderWitness()  # a Tracer that also records the engine's order with hooks of its own
    facts = training_step(data=fashion_data, tracer=witness)
    return facts, witness


@pytest.fixture(scope="module")
def traced(witnessed):
    facts, witness = witnessed
    return facts, witness.trace("training_step", "cpu", facts)


@pytest.fixture(scope="module")
def facts(traced):
    return traced[0]


def test_parameter_names_are_the_tutorials():
    assert PARAMETERS == [f"linear_relu_stack.{layer}.{kind}" for layer in (0, 2, 4) for kind in ("weight", "bias")]


def test_the_batch_has_the_tutorials_shapes(facts):
    assert facts.batch == {"X": "[64, 1, 28, 28] torch.float32", "y": "[64] torch.int64"}
    assert facts.logits_shape == [64, 10]


def test_every_parameter_moved_by_exactly_minus_lr_times_grad(facts):
    assert facts.lr == 1e-3
    assert facts.moved_by_exactly_minus_lr_grad == {name: True for name in PARAMETERS}


def test_two_roundings_are_at_most_a_rounding_error_away(facts):
    # before - lr * grad rounds lr * grad first; the step rounds once. Both agree to float32 precision.
    assert facts.two_step_arithmetic_difference < 1e-7


def test_zero_grad_sets_every_grad_to_none(facts):
    assert facts.grads_none_after_zero_grad == {name: True for name in PARAMETERS}


def test_zero_grad_defaults_to_set_to_none_for_optimizer_and_module(facts):
    for zero_grad in (torch.optim.Optimizer.zero_grad, torch.nn.Module.zero_grad):
        assert inspect.signature(zero_grad).parameters["set_to_none"].default is True
    assert facts.grads_none_after_module_zero_grad == {name: True for name in PARAMETERS}


def test_zero_grad_with_set_to_none_false_leaves_zeros(facts):
    assert facts.grads_zero_after_zero_grad_keeping_tensors == {name: True for name in PARAMETERS}


def test_eval_mode_alone_still_records_the_graph_and_no_grad_does_not(facts):
    assert facts.grad_fn_after_eval == "AddmmBackward0"
    assert facts.grad_fn_under_no_grad is None


def test_backward_gave_every_parameter_a_grad_of_its_shape(facts):
    shapes = {name: list(p.shape) for name, p in NeuralNetwork().named_parameters()}
    assert facts.grad_shapes == shapes


def test_the_loss_on_the_same_batch_goes_down_step_by_step(facts):
    losses = facts.losses_on_same_batch
    assert len(losses) == STEPS + 1
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_the_input_needs_no_grad_so_flatten_leaves_no_node(facts):
    assert facts.input_requires_grad is False
    assert "ViewBackward0" not in facts.graph_nodes
    # An input that required grad would have its own leaf, and Flatten's view node.
    assert facts.nodes_added_if_input_required_grad == ["AccumulateGrad", "ViewBackward0"]


def test_the_loss_graph(facts):
    assert facts.graph_nodes == {
        "NllLossBackward0": 1,
        "LogSoftmaxBackward0": 1,
        "AddmmBackward0": 3,
        "ReluBackward0": 2,
        "TBackward0": 3,
        "AccumulateGrad": 6,
    }
    assert sorted(facts.graph_leaves) == sorted(PARAMETERS)


def test_the_trace_names_each_accumulate_grad_by_its_parameter(traced):
    facts, trace = traced
    leaves = {node.variable: node for node in trace.graph.nodes if node.name == "AccumulateGrad"}
    assert sorted(leaves) == sorted(PARAMETERS)
    assert leaves["linear_relu_stack.0.weight"].leaf.shape == [512, 784]
    output = trace.graph.node(trace.graph.outputs[0])
    assert (output.variable, output.name) == ("loss", "NllLossBackward0")


def test_the_traced_order_is_the_engines_order(witnessed):
    _, witness = witnessed
    assert witness.traced_order() == witness.engine_order
    assert len(witness.engine_order) == 16


def test_the_trace_has_the_backward_order_with_gradient_shapes(traced):
    facts, trace = traced
    graph = trace.graph
    assert [step.name for step in trace.backward[:3]] == ["NllLossBackward0", "LogSoftmaxBackward0", "AddmmBackward0"]
    assert len(trace.backward) == 16
    order = {step.node: step.order for step in trace.backward}
    for edge in graph.edges:
        assert order[edge.source] < order[edge.target], edge
    arriving = {graph.node(s.node).variable: s.arriving[0].shape for s in trace.backward if s.name == "AccumulateGrad"}
    assert arriving == facts.grad_shapes
    first_layer = [s for s in trace.backward if s.name == "AddmmBackward0"][-1]
    # The first layer's input X needs no gradient: its slot leaves None.
    assert [g.shape if g else None for g in first_layer.leaving] == [[512], None, [784, 512]]


def test_the_narrative_states_each_phase_with_its_proof_and_the_trace_follows(fashion_data, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "120")  # the graph's lines unwrapped
    facts, lines = run_main("training_step", ["--trace", "--data", str(fashion_data)], monkeypatch, capsys)
    layers = [f"linear_relu_stack.{layer}" for layer in (0, 2, 4)]
    losses = " -> ".join(f"{value:.6f}" for value in facts.losses_on_same_batch)
    narrative = [
        facts.data,
        "One batch: X [64, 1, 28, 28] torch.float32 (requires_grad = False), y [64] torch.int64",
        "1. Forward: pred = model(X) has shape [64, 10]",
        f"2. Loss: loss = loss_fn(pred, y) = {facts.loss:.6f}",
        "   The loss's graph: NllLossBackward0 x1, LogSoftmaxBackward0 x1, AddmmBackward0 x3, AccumulateGrad x6,"
        " ReluBackward0 x2, TBackward0 x3",
        "   AccumulateGrad nodes, one per parameter: "
        + ", ".join(f"{layer}.{kind}" for layer in reversed(layers) for kind in ("bias", "weight")),
        "   No node for Flatten: X.requires_grad = False, so flattening X records nothing"
        " (an X that required grad would add AccumulateGrad, ViewBackward0)",
        "3. Backward: loss.backward() filled every parameter's .grad: linear_relu_stack.0.weight [512, 784],"
        " linear_relu_stack.0.bias [512], linear_relu_stack.2.weight [512, 512], linear_relu_stack.2.bias [512],"
        " linear_relu_stack.4.weight [10, 512], linear_relu_stack.4.bias [10]",
        "4. optimizer.step(): each parameter moved by exactly -lr * grad (lr = 0.001), checked against a copy"
        " taken before the step: after == before.add(grad, alpha=-lr) bit for bit for 6 of 6 parameters",
        "   (before - lr * grad in two operations rounds twice and differs by up to"
        f" {facts.two_step_arithmetic_difference:.3g})",
        "5. optimizer.zero_grad(): .grad is None (set_to_none=True) for 6 of 6 parameters",
        f"The loss on the same batch before each of 5 steps and after: {losses}; lower after the steps: True",
        "After one more backward: optimizer.zero_grad(set_to_none=False) leaves .grad tensors of zeros for"
        " 6 of 6 parameters; model.zero_grad() (set_to_none=True too) leaves .grad None for 6 of 6",
        "model.eval() alone still records: model(X).grad_fn = AddmmBackward0;"
        " under torch.no_grad(): model(X).grad_fn = None",
    ]
    assert lines[: len(narrative)] == narrative
    assert facts.data.startswith("Data: the offline stand-in for FashionMNIST")
    assert lines[len(narrative)] == ""  # then the trace
    graph = "\n".join(lines[len(narrative) :])
    assert graph.lstrip().startswith("Autograd graph")
    for name in ("NllLossBackward0", "LogSoftmaxBackward0", "AddmmBackward0", "ReluBackward0", "TBackward0"):
        assert name in graph
    assert "linear_relu_stack.0.weight = float32[512, 784]" in graph
    assert "Backward: the order in which the engine ran the nodes" in graph
