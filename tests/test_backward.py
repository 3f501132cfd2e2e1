"""The study note's graph: a = w + x, b = w + 1, y = a * b with w = 1, x = 2."""

import pytest

from scenarios.backward import SECOND_BACKWARD_ERROR, backward_pass


@pytest.fixture(scope="module")
def facts():
    return backward_pass()


def test_dy_dw_is_5(facts):
    assert facts.w_grad == 5.0


def test_dy_dx_is_2(facts):
    assert facts.x_grad == 2.0


def test_w_gradient_is_the_sum_of_both_paths(facts):
    # via a: dy/da * da/dw = b = 2; via b: dy/db * db/dw = a = 3
    assert (facts.grad_via_a, facts.grad_via_b) == (2.0, 3.0)
    assert facts.grad_via_a + facts.grad_via_b == facts.w_grad


def test_only_w_and_x_are_leaves(facts):
    assert facts.leaves == {"w": True, "x": True, "a": False, "b": False, "y": False}


def test_grad_fn_names(facts):
    assert facts.grad_fns == {"a": "AddBackward0", "b": "AddBackward0", "y": "MulBackward0"}


def test_second_backward_without_retain_graph_fails(facts):
    assert facts.second_backward_error.startswith(SECOND_BACKWARD_ERROR)


def test_retain_graph_lets_gradients_accumulate(facts):
    assert facts.w_grad_after_two_backwards == 10.0
