"""unsqueeze returns a new view; unsqueeze_ changes the tensor itself."""

import pytest
import torch
from conftest import run_main

from scenarios.unsqueeze import unsqueeze_lesson


@pytest.fixture(scope="module")
def facts():
    return unsqueeze_lesson()


def test_unsqueeze_returns_a_new_object_and_leaves_the_original_shape(facts):
    assert facts.u_is_new_object is True
    assert facts.u_shape == [1, 3]
    assert facts.x_shape == [3]


def test_the_new_tensor_is_a_view_sharing_storage(facts):
    assert facts.u_base_is_x is True
    assert facts.shares_data_ptr is True


def test_writing_through_the_view_changes_the_original(facts):
    assert facts.x_after_writing_u == [10.0, 2.0, 3.0]


def test_unsqueeze_in_place_returns_the_same_object_with_a_new_shape(facts):
    assert facts.inplace_returns_same_object is True
    assert facts.inplace_shape == [1, 3]


def test_unsqueeze_in_place_bumps_the_version_counter(facts):
    assert facts.version_after == facts.version_before + 1


def test_valid_dims_and_negative_dims(facts):
    assert facts.valid_dims == [-2, -1, 0, 1]
    assert facts.shapes_by_dim == {-2: [1, 3], -1: [3, 1], 0: [1, 3], 1: [3, 1]}


def test_out_of_range_dim_raises_index_error(facts):
    assert facts.out_of_range_error == "Dimension out of range (expected to be in range of [-2, 1], but got 2)"
    with pytest.raises(IndexError, match=r"expected to be in range of \[-2, 1\], but got -3"):
        torch.zeros(3).unsqueeze(-3)


def test_none_index_equals_unsqueeze_0(facts):
    assert facts.none_index_equals_unsqueeze is True


def test_grad_fn_names_of_both(facts):
    assert facts.grad_fn_out_of_place == "UnsqueezeBackward0"
    assert facts.grad_fn_in_place == "UnsqueezeBackward1"


def test_unsqueeze_in_place_on_a_leaf_that_requires_grad_fails(facts):
    assert facts.inplace_on_leaf_error.startswith(
        "a leaf Variable that requires grad is being used in an in-place operation"
    )


def test_gradient_flows_through_both(facts):
    assert facts.w_grad == [3.0, 3.0, 3.0]


def test_the_narrative_states_each_fact_with_its_value(monkeypatch, capsys):
    _, lines = run_main("unsqueeze", [], monkeypatch, capsys)
    assert lines == [
        "x = [1, 2, 3]; u = x.unsqueeze(0)",
        "u is a new object = True: u.shape = [1, 3], x.shape stays [3]",
        "...but a view of x: u._base is x = True, same data_ptr = True",
        "So u[0, 0] = 10 writes into x: x = [10.0, 2.0, 3.0]",
        "z.unsqueeze_(0) returns z itself = True, z.shape = [1, 3]",
        "...and bumps z._version: 0 -> 1",
        "A 1-d tensor takes dims [-2, -1, 0, 1]: shapes {-2: [1, 3], -1: [3, 1], 0: [1, 3], 1: [3, 1]}",
        "unsqueeze(2) fails: IndexError: Dimension out of range (expected to be in range of [-2, 1], but got 2)",
        "x[None] equals x.unsqueeze(0) (values and shape) = True",
        "grad_fn of w.unsqueeze(0): UnsqueezeBackward0; of (w * 2).unsqueeze_(1): UnsqueezeBackward1",
        "w.unsqueeze_(0) on a leaf that requires grad fails: RuntimeError:"
        " a leaf Variable that requires grad is being used in an in-place operation.",
        "y = w.unsqueeze(0).sum() + (w * 2).unsqueeze_(1).sum() gives w.grad = [3.0, 3.0, 3.0]  (1 + 2)",
    ]


def test_each_sum_holds_one_unsqueeze_node_as_the_breakpoint_table_says():
    # README: next_functions[0][0].next_functions holds UnsqueezeBackward0 only, [1][0] UnsqueezeBackward1.
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = w.unsqueeze(0).sum() + (w * 2).unsqueeze_(1).sum()

    def names(node):
        return [type(child).__name__ for child, _ in node.next_functions]

    assert names(y.grad_fn) == ["SumBackward0", "SumBackward0"]
    assert names(y.grad_fn.next_functions[0][0]) == ["UnsqueezeBackward0"]
    assert names(y.grad_fn.next_functions[1][0]) == ["UnsqueezeBackward1"]
