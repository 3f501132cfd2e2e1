"""In-place operations and version counters: what autograd allows, refuses and misses."""

import pytest
import torch
from conftest import run_main
from rich.console import Console

from scenarios.in_place import (
    DETACH_VIEW_ERROR,
    INPLACE_LEAF_ERROR,
    INPLACE_VIEW_OF_LEAF_ERROR,
    VERSION_ERROR,
    in_place,
)
from traces import Tracer
from traces.render.terminal import graph_tree


@pytest.fixture(scope="module")
def traced():
    tracer = Tracer()
    facts = in_place(tracer=tracer)
    return facts, tracer.trace("in_place", "cpu", facts)


@pytest.fixture(scope="module")
def facts(traced):
    return traced[0]


def test_every_in_place_op_bumps_the_version_and_an_out_of_place_op_does_not(facts):
    assert facts.versions == {
        "t = torch.zeros(3)": 0,
        "t.add_(1)": 1,
        "t[0] = 5": 2,  # indexing assignment is an in-place copy_
        "t.mul_(2)": 3,
        "t.add(1)": 3,
    }


def test_composite_in_place_calls_write_several_times_and_metadata_only_ones_not_at_all(facts):
    assert facts.version_added == {
        "nn.init.orthogonal_(q)": 2,
        "nn.init.sparse_(m, 0.5) on 4 columns": 5,
        "r.requires_grad_()": 0,
        "r.detach_()": 0,
    }


def test_a_view_and_its_base_share_one_version_counter(facts):
    assert facts.view_and_base_versions == {"v = t[1:]": [3, 3], "v.add_(1)": [4, 4], "t.add_(1)": [5, 5]}


def test_an_in_place_op_on_a_non_leaf_becomes_its_grad_fn(facts):
    assert facts.grad_fn_before_in_place == "MulBackward0"
    assert (facts.grad_fn_after_in_place, facts.grad_fn_after_in_place_feeds) == ("AddBackward0", "MulBackward0")


def test_an_in_place_op_on_a_view_rewrites_the_bases_grad_fn_to_copy_slices(facts):
    assert (facts.base_grad_fn_after_view_change, facts.copy_slices_feeds) == ("CopySlices", "MulBackward0")
    # g = [2, 4, 6] * [10, 10, 1] = [20, 40, 6]; y = sum(g^2): dy/dw = 2g * dg/dw = [40, 80, 12] * [20, 20, 2]
    assert facts.grad_through_copy_slices == [800.0, 1600.0, 24.0]


def test_a_tensor_changed_before_it_is_saved_is_saved_at_its_new_version(facts):
    assert facts.saved_version == 1


def test_changing_a_saved_tensor_makes_backward_raise_naming_both_versions(facts):
    assert facts.saved_then_changed_error.startswith(VERSION_ERROR)
    assert facts.saved_then_changed_error.endswith("is at version 1; expected version 0 instead.")


def test_reading_a_changed_saved_tensor_makes_the_same_check(facts):
    assert facts.reading_saved_after_change_error == facts.saved_then_changed_error


def test_changing_a_tensor_no_node_saved_is_fine(facts):
    assert facts.unsaved_then_changed_grad == [2.0, 2.0, 2.0]


def test_in_place_on_a_leaf_or_a_view_of_one_is_refused_even_without_a_graph(facts):
    assert facts.leaf_error == INPLACE_LEAF_ERROR
    assert facts.view_of_leaf_error == INPLACE_VIEW_OF_LEAF_ERROR
    with pytest.raises(RuntimeError, match="^a leaf Variable that requires grad is being used in an in-place"):
        torch.ones(2, requires_grad=True).zero_()


def test_under_no_grad_the_in_place_op_runs_bumps_the_version_and_the_leaf_stays_a_leaf(facts):
    assert facts.no_grad_values == [2.0, 3.0, 4.0]
    assert facts.no_grad_version == 1
    assert (facts.no_grad_is_leaf, facts.no_grad_requires_grad) == (True, True)


def test_data_and_detach_share_storage_but_only_detach_shares_the_version_counter(facts):
    assert (facts.data_shares_storage, facts.detach_shares_storage) == (True, True)
    assert (facts.data_shares_version, facts.detach_shares_version) == (False, True)


def test_a_change_through_data_gives_a_silently_wrong_gradient_and_detach_raises(facts):
    assert facts.correct_grad == [2.0, 4.0, 6.0]  # 2w at the w that y was computed from
    assert facts.grad_after_data_change == [20.0, 40.0, 60.0]  # 2 * (10w): the changed values
    assert facts.detach_change_error.startswith(VERSION_ERROR)
    assert facts.detach_change_error.endswith("is at version 1; expected version 0 instead.")


def test_a_change_through_data_is_harmless_when_the_node_does_not_use_the_changed_values(facts):
    assert facts.abs_correct_grad == [1.0, -1.0, 1.0]
    assert facts.abs_grad_after_data_change == facts.abs_correct_grad


def test_detach_in_place_is_refused_on_a_view_and_makes_a_non_view_a_leaf(facts):
    assert facts.detach_in_place_error == DETACH_VIEW_ERROR
    assert facts.detach_in_place_on_non_view == [True, False]


def test_the_trace_shows_the_version_each_saved_tensor_was_saved_at(traced):
    _, trace = traced
    square = next(node for node in trace.graph.nodes if node.saved and node.saved[0].shape == [3])
    assert square.name == "MulBackward0"
    assert [(s.name, s.version, s.freed) for s in square.saved] == [("other", 1, True), ("self", 1, True)]
    console = Console(record=True, width=200)
    console.print(graph_tree(trace.graph))
    text = console.export_text()
    assert "saved: other float32[3] _version=1 (freed), self float32[3] _version=1 (freed)" in text
    assert "g = CopySlices" in text


def test_every_backward_passes_engine_run_backward_where_the_version_error_is_raised(monkeypatch):
    # What the docstring's breakpoint in torch/autograd/graph.py _engine_run_backward shows.
    run_backward = torch.autograd._engine_run_backward
    outcomes = []

    def watched(*args, **kwargs):
        try:
            result = run_backward(*args, **kwargs)
        except RuntimeError as error:
            outcomes.append(str(error).split(":")[0])
            raise
        outcomes.append("ok")
        return result

    monkeypatch.setattr(torch.autograd, "_engine_run_backward", watched)
    in_place()
    assert outcomes == ["ok", VERSION_ERROR, "ok", "ok", "ok", VERSION_ERROR]


def test_the_narrative_states_each_fact_with_its_value(monkeypatch, capsys):
    facts, lines = run_main("in_place", [], monkeypatch, capsys)
    saved_error = facts.saved_then_changed_error
    assert lines == [
        "1. Each in-place kernel that writes bumps the tensor's version counter once; an out-of-place op does not:",
        "   t = torch.zeros(3) -> t._version = 0, t.add_(1) -> t._version = 1, t[0] = 5 -> t._version = 2,"
        " t.mul_(2) -> t._version = 3, t.add(1) -> t._version = 3",
        "   Composite ones may write several times, metadata-only ones not at all (what each call added):",
        "   nn.init.orthogonal_(q) +2, nn.init.sparse_(m, 0.5) on 4 columns +5, r.requires_grad_() +0, r.detach_() +0",
        "2. A view and its base share one counter ([v._version, t._version]):",
        "   v = t[1:] -> [3, 3], v.add_(1) -> [4, 4], t.add_(1) -> [5, 5]",
        "3. h = w * 2 has grad_fn MulBackward0; after h.add_(1) it is AddBackward0, which feeds MulBackward0",
        "   g = w * 2; g[:2].mul_(10) changes g through a view: g.grad_fn is CopySlices, which feeds MulBackward0",
        "   y = (g * g).sum() saves g at version 1, so backward works: w.grad = [800.0, 1600.0, 24.0]"
        "  (dy/dg = 2g = [40, 80, 12] times dg/dw = [20, 20, 2])",
        "4. Changing a tensor a node saved: s = w * 2; product = (s * s).sum(); s.add_(1); product.backward() fails:",
        f"   RuntimeError: {saved_error}",
        f"   Reading product's saved s (MulBackward0._saved_self) makes the same check: {saved_error}",
        "   Changing one no node saved is fine: total = (s + 1).sum(); s.add_(1); total.backward()"
        " gives w.grad = [2.0, 2.0, 2.0]",
        f"5. w.add_(1) on a leaf that requires grad fails, though no graph uses w: RuntimeError: {INPLACE_LEAF_ERROR}",
        f"   w[:2].mul_(2), on a view of it: RuntimeError: {INPLACE_VIEW_OF_LEAF_ERROR}",
        "   Under torch.no_grad(), w.add_(1) works: w = [2.0, 3.0, 4.0], w._version = 1, is_leaf = True,"
        " requires_grad = True",
        "6. Share w's storage: w.data True, w.detach() True; share w's version counter (a change through them"
        " bumps w._version): w.data False, w.detach() True",
        "   y = (w * w).sum() saves w; w changed in place (mul_(10)) before y.backward(); the right gradient,"
        " 2w at the values y was computed from, is [2.0, 4.0, 6.0]:",
        "   through w.data:     w.grad = [20.0, 40.0, 60.0], silently wrong (mul uses the changed w)",
        f"   through w.detach(): RuntimeError: {facts.detach_change_error}",
        "   but y = w.abs().sum() at w = [1, -2, 3], then w.data.mul_(10): w.grad = [1.0, -1.0, 1.0],"
        " right (sign(w) = [1.0, -1.0, 1.0] did not change)",
        f"7. k = w * 2; k[1:].detach_() on a view fails: RuntimeError: {DETACH_VIEW_ERROR}",
        "   k.detach_() detaches k itself: is_leaf = True, requires_grad = False",
    ]
    assert saved_error.endswith("is at version 1; expected version 0 instead.")
    assert facts.detach_change_error.endswith("is at version 1; expected version 0 instead.")
