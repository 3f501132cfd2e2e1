"""Leaves, non-leaf gradients, retain_grad, hooks, in-place changes and detach."""

import pytest

from scenarios.leaf_gradients import INPLACE_LEAF_ERROR, NONLEAF_GRAD_WARNING, leaf_gradients


@pytest.fixture(scope="module")
def facts():
    return leaf_gradients()


def test_created_tensors_are_leaves_and_results_are_not(facts):
    assert facts.leaves == {"w": True, "c": True, "h": False, "k": False, "y": False}
    assert facts.requires_grad == {"w": True, "c": False, "h": True}


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


def test_retain_grad_keeps_a_non_leaf_gradient(facts):
    assert facts.k_grad == [6.0, 10.0, 14.0]


def test_hook_sees_the_gradient_without_keeping_it(facts):
    assert facts.hook_saw == [6.0, 10.0, 14.0]
    assert facts.h_grad_is_none is True


def test_in_place_change_of_a_leaf_that_requires_grad_fails(facts):
    assert facts.inplace_error.startswith(INPLACE_LEAF_ERROR)


def test_in_place_change_under_no_grad_is_allowed(facts):
    # w - 0.25 * w.grad = [1 - 3, 2 - 5, 3 - 7]
    assert facts.w_after_no_grad_step == [-2.0, -3.0, -4.0]
    assert facts.still_leaf_after_step is True


def test_detach_gives_a_leaf_that_shares_storage(facts):
    assert facts.detached_is_leaf is True
    assert facts.detached_requires_grad is False
    assert facts.detached_shares_storage is True
    assert facts.w_after_writing_detached == [100.0, -3.0, -4.0]
