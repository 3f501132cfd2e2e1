"""Leaves, non-leaf gradients, retain_grad, hooks, in-place changes and detach."""

import pytest
import torch
from conftest import run_main

from scenarios.leaf_gradients import (
    INPLACE_LEAF_ERROR,
    INTEGER_REQUIRES_GRAD_ERROR,
    NONLEAF_GRAD_WARNING,
    NONLEAF_REQUIRES_GRAD_ERROR,
    POST_ACCUMULATE_NON_LEAF_ERROR,
    RETAIN_GRAD_ERROR,
    leaf_gradients,
)


@pytest.fixture(scope="module")
def facts():
    return leaf_gradients()


def test_every_tensor_that_needs_no_grad_is_a_leaf_and_results_that_need_one_are_not(facts):
    assert facts.leaves == {"w": True, "c": True, "n": True, "h": False, "k": False, "y": False}
    assert facts.requires_grad == {"w": True, "c": False, "n": False, "h": True}


def test_a_result_computed_under_no_grad_is_a_leaf_too():
    w = torch.ones(2, requires_grad=True)
    with torch.no_grad():
        result = w * 2
    assert (result.is_leaf, result.requires_grad, result.grad_fn) == (True, False, None)


def test_leaf_that_requires_grad_gets_its_gradient(facts):
    # y = sum((2w + 1)^2), so dy/dw = 4 * (2w + 1)
    assert facts.w_grad == [12.0, 20.0, 28.0]


def test_non_leaf_grad_is_none_and_reading_it_warns_about_retain_grad(facts):
    assert facts.h_grad_is_none is True
    assert facts.h_grad_warning.startswith(NONLEAF_GRAD_WARNING)
    assert "retain_grad()" in facts.h_grad_warning


def test_reading_a_non_leaf_grad_raises_user_warning_directly():
    import torch

    w = torch.tensor(1.0, requires_grad=True)
    h = w * 2
    h.backward()
    with pytest.warns(UserWarning, match=r"use \.retain_grad\(\) on the non-leaf Tensor"):
        assert h.grad is None


def test_a_leaf_is_a_tensor_no_recorded_operation_made_not_one_you_wrote_down():
    # What the README's leaf row says: .double() is a recorded op; requires_grad_() records nothing.
    made = torch.tensor([1.0, 2.0], requires_grad=True)
    converted = torch.tensor([1.0, 2.0], requires_grad=True).double()
    computed_then_asked = (torch.ones(2) * 2).requires_grad_()
    assert (made.is_leaf, converted.is_leaf, computed_then_asked.is_leaf) == (True, False, True)
    assert type(converted.grad_fn).__name__ == "ToCopyBackward0"
    assert computed_then_asked.grad_fn is None


def test_the_lesson_really_calls_retain_grad_on_k_and_on_the_leaf_w(monkeypatch):
    # retains_grad of w is False with or without w.retain_grad(): only watching the call
    # notices the demonstration gone.
    called_on = []
    real_retain_grad = torch.Tensor.retain_grad

    def watched(tensor):
        called_on.append((tensor.is_leaf, tensor.requires_grad, tuple(tensor.shape)))
        return real_retain_grad(tensor)

    monkeypatch.setattr(torch.Tensor, "retain_grad", watched)
    leaf_gradients()
    # k (a non-leaf), w (a leaf: a no-op), then c (refused: needs no grad)
    assert called_on == [(False, True, (3,)), (True, True, (3,)), (True, False, (3,))]


def test_retain_grad_on_a_leaf_keeps_the_same_grad_object_as_without_it():
    with_call, without = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    with_call.retain_grad()
    assert (with_call.retains_grad, without.retains_grad) == (False, False)
    (with_call * 3).sum().backward()
    (without * 3).sum().backward()
    kept = with_call.grad
    (with_call * 3).sum().backward()  # accumulates into the same tensor, in place
    assert with_call.grad is kept and with_call.grad.tolist() == [6.0, 6.0] and without.grad.tolist() == [3.0, 3.0]


def test_hooks_run_before_and_after_the_leafs_grad_is_written(facts):
    assert facts.hook_order == [
        "hook on h",
        "hook on w: w.grad = None",
        "post-accumulate hook on w: w.grad = [12.0, 20.0, 28.0]",
    ]


def test_a_post_accumulate_grad_hook_on_a_non_leaf_is_refused(facts):
    assert facts.post_accumulate_on_non_leaf_error == POST_ACCUMULATE_NON_LEAF_ERROR
    with pytest.raises(RuntimeError, match="^post accumulate grad hooks cannot be registered on non-leaf tensors$"):
        (torch.ones(2, requires_grad=True) * 2).register_post_accumulate_grad_hook(print)


def test_a_post_accumulate_grad_hook_gets_the_leaf_itself():
    w = torch.ones(2, requires_grad=True)
    got = []
    w.register_post_accumulate_grad_hook(lambda leaf: got.append((leaf is w, leaf.grad.tolist())))
    (w * 5).sum().backward()
    assert got == [(True, [5.0, 5.0])]


def test_retain_grad_keeps_a_non_leaf_gradient(facts):
    assert facts.k_grad == [6.0, 10.0, 14.0]


def test_retains_grad_is_true_after_retain_grad_and_retain_grad_does_nothing_on_a_leaf(facts):
    assert facts.retains_grad == {"k": True, "h": False, "w": False}


def test_retain_grad_on_a_tensor_that_does_not_require_grad_fails(facts):
    assert facts.retain_grad_error == RETAIN_GRAD_ERROR
    with pytest.raises(RuntimeError, match="can't retain_grad on Tensor that has requires_grad=False"):
        torch.ones(2).retain_grad()


def test_requires_grad_of_a_non_leaf_cannot_be_changed(facts):
    assert facts.nonleaf_requires_grad_error.startswith(NONLEAF_REQUIRES_GRAD_ERROR)
    assert "var_no_grad = var.detach()" in facts.nonleaf_requires_grad_error
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
        (torch.ones(2, requires_grad=True) * 2).requires_grad = False


def test_an_integer_tensor_cannot_require_grad(facts):
    assert facts.integer_requires_grad_error == INTEGER_REQUIRES_GRAD_ERROR
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients"):
        torch.arange(3).requires_grad_()


def test_hook_sees_the_gradient_without_keeping_it(facts):
    assert facts.hook_saw == [6.0, 10.0, 14.0]
    assert facts.h_grad_is_none is True


def test_in_place_change_of_a_leaf_that_requires_grad_fails(facts):
    assert facts.inplace_error.startswith(INPLACE_LEAF_ERROR)


def test_the_refusal_does_not_depend_on_a_graph_needing_the_leaf():
    # A fresh leaf that no operation has used yet: nothing could need its old value.
    with pytest.raises(RuntimeError, match=INPLACE_LEAF_ERROR):
        torch.ones(2, requires_grad=True).add_(1)


def test_in_place_change_under_no_grad_is_allowed(facts):
    # w - 0.25 * w.grad = [1 - 3, 2 - 5, 3 - 7]
    assert facts.w_after_no_grad_step == [-2.0, -3.0, -4.0]
    assert facts.still_leaf_after_step is True


def test_the_no_grad_step_changes_w_itself_and_bumps_its_version(facts):
    # w.data -= ... would change the values alike but leave w._version at 0.
    assert facts.w_version_after_step == 1


def test_detach_gives_a_leaf_that_shares_storage(facts):
    assert facts.detached_is_leaf is True
    assert facts.detached_requires_grad is False
    assert facts.detached_shares_storage is True
    assert facts.w_after_writing_detached == [100.0, -3.0, -4.0]


def test_detach_shares_the_version_counter_so_writing_through_it_bumps_ws_version(facts):
    # d = w.data would share the storage but not the counter: w._version would stay 1.
    assert facts.w_version_after_writing_detached == 2


def test_the_narrative_states_each_fact_with_its_value(monkeypatch, capsys):
    facts, lines = run_main("leaf_gradients", [], monkeypatch, capsys)
    assert lines == [
        "w = [1, 2, 3] (requires_grad), c = ones(3), n = c * 2, h = w * 2, k = h + c, y = (k * k).sum()",
        "Leaves (is_leaf): {'w': True, 'c': True, 'n': True, 'h': False, 'k': False, 'y': False}",
        "requires_grad: {'w': True, 'c': False, 'n': False, 'h': True}  (h needs one because w does; n, made from c, does not)",
        "A leaf that requires grad keeps its gradient: w.grad = [12.0, 20.0, 28.0]  (dy/dw = 2 * 2k)",
        f"A non-leaf does not: h.grad is None = True, with a UserWarning: {facts.h_grad_warning}",
        "retain_grad() keeps it: k.grad = [6.0, 10.0, 14.0]  (dy/dk = 2k)",
        "retains_grad: {'k': True, 'h': False, 'w': False}  (w.retain_grad() on a leaf changes nothing)",
        "A hook on h saw [6.0, 10.0, 14.0] while backward ran, without keeping it (h.grad is None, above)",
        "Hooks in the order backward ran them: ['hook on h', 'hook on w: w.grad = None',"
        " 'post-accumulate hook on w: w.grad = [12.0, 20.0, 28.0]']",
        f"h.register_post_accumulate_grad_hook(...) fails: RuntimeError: {POST_ACCUMULATE_NON_LEAF_ERROR}",
        f"c.retain_grad() fails: RuntimeError: {RETAIN_GRAD_ERROR}",
        f"h.requires_grad_(False) fails: RuntimeError: {facts.nonleaf_requires_grad_error}",
        f"torch.tensor([1, 2, 3], requires_grad=True) fails: RuntimeError: {INTEGER_REQUIRES_GRAD_ERROR}",
        f"w.add_(1) fails: RuntimeError: {INPLACE_LEAF_ERROR}.",
        "Under torch.no_grad(), w -= 0.25 * w.grad works: w = [-2.0, -3.0, -4.0], still a leaf that requires grad"
        " = True, w._version = 1",
        "d = w.detach(): is_leaf = True, requires_grad = False, shares w's storage = True",
        "So d[0] = 100 changes w too: w = [100.0, -3.0, -4.0], and bumps the version counter they share: w._version = 2",
    ]
    assert facts.h_grad_warning.startswith(NONLEAF_GRAD_WARNING)
    assert facts.nonleaf_requires_grad_error.startswith(NONLEAF_REQUIRES_GRAD_ERROR)
