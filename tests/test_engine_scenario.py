"""scenarios/engine.py: the engine's steps on the note's graph, each printed fact asserted."""

import pytest
from conftest import run_main

from scenarios.engine import engine_run

SECOND_BACKWARD = "Trying to backward through the graph a second time"


@pytest.fixture(scope="module")
def facts():
    return engine_run()


def test_dependencies_count_two_edges_into_w(facts):
    assert facts.dependencies == {"a": 1, "b": 1, "w": 2, "x": 1}


def test_order_is_torchs(facts):
    assert facts.order == ["y", "b", "a", "w", "x"]
    assert facts.torch_order == facts.order


def test_w_buffer_adds_three_via_b_then_two_via_a(facts):
    assert facts.arrivals_at_w == [3.0, 2.0]
    assert (facts.w_grad, facts.x_grad) == (5.0, 2.0)


def test_validate_outputs_sums_the_bias_gradient_over_the_batch(facts):
    assert facts.bias_grad_shape_from_node == [4, 2]
    assert facts.bias_grad_shape == [2]
    assert facts.bias_grad_is_batch_sum


def test_hooks_fire_in_engine_order_as_in_torch(facts):
    assert facts.hook_order == ["y", "b", "a", "w", "x"]
    assert facts.torch_hook_order == facts.hook_order


def test_second_backward_fails(facts):
    assert facts.second_backward_error.startswith(SECOND_BACKWARD)


def test_narrative(monkeypatch, capsys):
    _, lines = run_main("engine", [], monkeypatch, capsys)
    assert lines[:8] == [
        "The graph: w = 1, x = 2, a = w + x, b = w + 1, y = a * b; engine.backward(y) runs it in Python",
        "compute_dependencies (edges into each node): {'a': 1, 'b': 1, 'w': 2, 'x': 1}",
        "Order of the nodes: y, b, a, w, x (torch's C++ engine: y, b, a, w, x)",
        "w's input buffer adds what arrives: 3.0 via b, then 2.0 via a -> w.grad = 5.0",
        "x.grad = 2.0",
        "validate_outputs: AddmmBackward0 returns the bias gradient as [4, 2], summed over the batch to [2]",
        "Tensor hooks fire in the engine's order: y, b, a, w, x (torch: y, b, a, w, x)",
        "A second engine.backward(y) fails (saved tensors freed): RuntimeError: " + SECOND_BACKWARD
        + " (or directly access saved tensors after they have already been freed)",
    ]
