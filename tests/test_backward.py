"""The study note's graph: a = w + x, b = w + 1, y = a * b with w = 1, x = 2."""

import pytest
import torch
from conftest import run_main

from scenarios.backward import NO_GRAPH_ERROR, NON_SCALAR_ERROR, SECOND_BACKWARD_ERROR, backward_pass


@pytest.fixture(scope="module")
def facts():
    return backward_pass()


def test_grad_is_none_before_the_first_backward(facts):
    assert facts.w_grad_before_backward is None


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


def test_a_graph_that_saved_no_tensor_runs_backward_twice_without_retain_graph(facts):
    assert facts.w_grad_after_two_backwards_of_a_sum == 2.0


def test_what_a_second_backward_needs_is_the_saved_tensors():
    # MulBackward0 saved a and b; AddBackward0 saved only its alpha, a number.
    w, x = torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    y, s = (w + x) * (w + 1), w + x
    assert sorted(name for name in dir(y.grad_fn) if name.startswith("_saved_")) == ["_saved_other", "_saved_self"]
    assert [name for name in dir(s.grad_fn) if name.startswith("_saved_")] == ["_saved_alpha"]


def test_backward_of_a_non_scalar_needs_a_gradient(facts):
    assert facts.non_scalar_error == NON_SCALAR_ERROR
    w = torch.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match=NON_SCALAR_ERROR):
        (w * torch.ones(3)).backward()
    (w * torch.ones(3)).backward(gradient=torch.ones(3))  # with gradient=, it runs: dL/dw = 1 + 1 + 1
    assert w.grad.item() == 3.0


def test_backward_of_a_tensor_without_a_graph_fails(facts):
    assert facts.no_graph_error == NO_GRAPH_ERROR
    with pytest.raises(RuntimeError, match="does not require grad and does not have a grad_fn"):
        torch.tensor(3.0).backward()


def test_the_narrative_states_each_fact_with_its_value(monkeypatch, capsys):
    facts, lines = run_main("backward", [], monkeypatch, capsys)
    assert lines == [
        "The graph: w = 1, x = 2, a = w + x, b = w + 1, y = a * b",
        "Leaves (is_leaf): {'w': True, 'x': True, 'a': False, 'b': False, 'y': False}",
        "Nodes (grad_fn): {'a': 'AddBackward0', 'b': 'AddBackward0', 'y': 'MulBackward0'}",
        "Before backward(), w.grad = None",
        "dy/dw = b + a                     -> w.grad = 5.0",
        "dy/dx = b                         -> x.grad = 2.0",
        "w feeds two nodes; the paths add: via a 2.0 + via b 3.0 = 5.0",
        "A second y.backward() fails (MulBackward0's saved a and b are freed): RuntimeError: "
        + facts.second_backward_error,
        "With retain_graph=True, two backward() calls accumulate: w.grad = 10.0",
        "s = w + x saves no tensor, so s.backward() twice works without retain_graph: w.grad = 2.0",
        f"backward() of a non-scalar (w * ones(3)) without gradient= fails: RuntimeError: {NON_SCALAR_ERROR}",
        f"backward() of torch.tensor(3.0), which has no graph, fails: RuntimeError: {NO_GRAPH_ERROR}",
    ]
    assert facts.second_backward_error.startswith(SECOND_BACKWARD_ERROR)


def watch(monkeypatch, name: str) -> list[str]:
    """Replace torch.autograd.<name> by a wrapper that notes how each call ended."""
    function, outcomes = getattr(torch.autograd, name), []

    def watched(*args, **kwargs):
        try:
            result = function(*args, **kwargs)
        except RuntimeError as error:
            outcomes.append(str(error).split(" (")[0])
            raise
        outcomes.append("ok")
        return result

    monkeypatch.setattr(torch.autograd, name, watched)
    return outcomes


def test_every_backward_call_passes_torch_autograd_backward(monkeypatch):
    # What the README's breakpoint in torch/autograd/__init__.py backward shows: eight stops,
    # and which of the failures come from the engine (_engine_run_backward) and which before it.
    calls, engine_calls = watch(monkeypatch, "backward"), watch(monkeypatch, "_engine_run_backward")
    backward_pass()
    assert calls == ["ok", SECOND_BACKWARD_ERROR, "ok", "ok", "ok", "ok", NON_SCALAR_ERROR, NO_GRAPH_ERROR]
    assert engine_calls == ["ok", SECOND_BACKWARD_ERROR, "ok", "ok", "ok", "ok", NO_GRAPH_ERROR]
