"""One training step of the quickstart's model, phase by phase."""

import inspect

import pytest
import torch

from conftest import run_script
from scenarios._fashion import NeuralNetwork
from scenarios.training_step import STEPS, training_step
from traces import Tracer

PARAMETERS = [name for name, _ in NeuralNetwork().named_parameters()]


@pytest.fixture(scope="module")
def traced(fashion_data):
    tracer = Tracer()
    facts = training_step(data=fashion_data, tracer=tracer)
    return facts, tracer.trace("training_step", "cpu", facts)


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


def test_the_script_prints_each_phase_with_its_proof_and_the_trace(fashion_data):
    result = run_script("scenarios/training_step.py", "--trace", "--data", str(fashion_data))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("Data: the offline stand-in for FashionMNIST") == 1
    assert "AccumulateGrad nodes, one per parameter: linear_relu_stack.4.bias" in out
    assert "No node for Flatten: X.requires_grad = False" in out
    assert "bit for bit for 6 of 6 parameters" in out
    assert ".grad is None (set_to_none=True) for 6 of 6 parameters" in out
    assert "lower after the steps: True" in out
    graph = out[out.index("Autograd graph") :]
    for name in ("NllLossBackward0", "LogSoftmaxBackward0", "AddmmBackward0", "ReluBackward0", "TBackward0"):
        assert name in graph
    assert "linear_relu_stack.0.weight = float32[512, 784]" in graph
    assert "Backward: the order in which the engine ran the nodes" in graph
