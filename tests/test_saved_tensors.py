"""What a node saves for backward: an input itself, its own output, or only what a gradient needs."""

import pytest
import torch
from conftest import run_main
from rich.console import Console

from pydevd_plugins.extensions.stepthrough_variables import node_children
from scenarios.saved_tensors import OUTPUT_PART, VERSION_ERROR, saved_tensors
from traces import Tracer
from traces.data.tensors import describe
from traces.render.terminal import graph_tree

VERSION_END = "[torch.FloatTensor [3]] is at version 1; expected version 0 instead."


@pytest.fixture(scope="module")
def traced():
    tracer = Tracer()
    facts = saved_tensors(tracer=tracer)
    return facts, tracer.trace("saved_tensors", "cpu", facts)


@pytest.fixture(scope="module")
def facts(traced):
    return traced[0]


def test_each_node_saves_what_its_gradient_formula_needs(facts):
    assert facts.saved_attributes == {
        "PowBackward0": ["_saved_exponent", "_saved_self"],
        "ExpBackward0": ["_saved_result"],
        "MulBackward0": ["_saved_other", "_saved_self"],
    }


def test_pow_saves_its_input_itself(facts):
    assert facts.pow_saved_self_is_x is True
    assert facts.pow_saved_exponent == 2


def test_exp_saves_its_result_as_a_new_object_over_the_same_storage(facts):
    assert facts.exp_saved_result_equals_output is True
    assert facts.exp_saved_result_is_output is False
    assert facts.exp_saved_result_shares_storage is True


def test_mul_saves_only_the_factor_a_needed_gradient_uses(facts):
    assert (facts.mul_saved_self_is_none, facts.mul_saved_other_is_c) == (True, True)
    # With both factors requiring grad, both are kept.
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    node = (a * b).grad_fn
    assert node._saved_self is a and node._saved_other is b


def test_backward_uses_what_was_saved(facts):
    assert facts.x_grad == pytest.approx([2 + 2.718281828, 4 + 7.389056099, 6 + 20.08553692])
    assert facts.w_grad == [4.0, 5.0, 6.0]


def test_a_changed_saved_input_is_named_by_shape_and_version_only(facts):
    assert facts.changed_input_error == f"{VERSION_ERROR}: {VERSION_END}"
    assert "which is output" not in facts.changed_input_error


def test_a_changed_saved_output_names_the_node_that_made_it(facts):
    assert facts.changed_output_error == f"{VERSION_ERROR}: [torch.FloatTensor [3]]{OUTPUT_PART} is at version 1;" \
        " expected version 0 instead."
    assert OUTPUT_PART == ", which is output 0 of Exp,"


def test_the_variables_pane_shows_saved_self_as_x_and_saved_result():
    # What the docstring's breakpoint shows when grad_fn is expanded.
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    squared, exponential = x.pow(2), x.exp()
    pow_children = {name: value for name, value, _ in node_children(squared.grad_fn)}
    assert pow_children["saved self"] is x
    assert describe(pow_children["saved self"]).endswith("leaf · requires_grad")
    assert pow_children["saved exponent"] == 2
    exp_children = {name: value for name, value, _ in node_children(exponential.grad_fn)}
    assert torch.equal(exp_children["saved result"], exponential)


def test_the_trace_shows_what_each_node_saved(traced):
    _, trace = traced
    saved = {node.name: [(s.name, s.version, s.freed) for s in node.saved] for node in trace.graph.nodes if node.saved}
    assert saved["PowBackward0"] == [("exponent", None, False), ("self", 0, True)]
    assert saved["ExpBackward0"] == [("result", 0, True)]
    console = Console(record=True, width=200)
    console.print(graph_tree(trace.graph))
    text = console.export_text()
    assert "PowBackward0  saved: exponent=2, self float32[3] _version=0 (freed)" in text
    assert "ExpBackward0  saved: result float32[3] _version=0 (freed)" in text
    assert "MulBackward0  saved: other float32[3] _version=0 (freed), self=None" in text


def test_the_narrative_states_each_fact_with_its_value(monkeypatch, capsys):
    facts, lines = run_main("saved_tensors", [], monkeypatch, capsys)
    assert lines == [
        "x = [1, 2, 3], w = [1, 1, 1] (both require grad), c = [4, 5, 6] (does not)",
        "squared = x.pow(2), exponential = x.exp(), product = w * c, y = (squared + exponential + product).sum()",
        "What each node saved (its _saved_* attributes): {'PowBackward0': ['_saved_exponent', '_saved_self'],"
        " 'ExpBackward0': ['_saved_result'], 'MulBackward0': ['_saved_other', '_saved_self']}",
        "PowBackward0 saved x itself: _saved_self is x = True, _saved_exponent = 2  (d/dx x^2 = 2x needs x)",
        "ExpBackward0 saved its output: _saved_result equals exponential = True, is exponential = False,"
        " same storage = True  (d/dx e^x = e^x needs the result)",
        "MulBackward0 of w * c saved only c: _saved_self is None = True, _saved_other is c = True"
        "  (dy/dw = c; c needs no gradient, so w is not kept)",
        "backward: x.grad = [4.7183, 11.3891, 26.0855]  (2x + e^x), w.grad = [4.0, 5.0, 6.0]  (c)",
        f"c.add_(1) before backward of (w * c).sum(), c a saved input: RuntimeError: {VERSION_ERROR}: {VERSION_END}",
        "exponential.add_(1) before backward, a saved output: RuntimeError:"
        f" {VERSION_ERROR}: [torch.FloatTensor [3]], which is output 0 of Exp, is at version 1; expected version 0 instead.",
    ]
    assert facts.changed_input_error.endswith(VERSION_END)


def test_next_functions_0_leads_down_to_pow_and_exp_as_the_breakpoint_table_says():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w, c = torch.ones(3, requires_grad=True), torch.tensor([4.0, 5.0, 6.0])
    y = (x.pow(2) + x.exp() + w * c).sum()

    def names(node):
        return [type(child).__name__ for child, _ in node.next_functions]

    first = y.grad_fn.next_functions[0][0]
    assert (type(y.grad_fn).__name__, names(y.grad_fn), names(first)) == (
        "SumBackward0", ["AddBackward0"], ["AddBackward0", "MulBackward0"]
    )
    assert names(first.next_functions[0][0]) == ["PowBackward0", "ExpBackward0"]


def test_the_traced_graph_is_the_lessons_graph(traced):
    _, trace = traced
    named = {node.id: node.variable or node.name for node in trace.graph.nodes}
    edges = sorted((named[edge.source], named[edge.target]) for edge in trace.graph.edges)
    assert sorted(named.values()) == [
        "AddBackward0", "AddBackward0", "ExpBackward0", "MulBackward0", "PowBackward0", "w", "x", "y",
    ]  # fmt: skip
    assert edges == [
        ("AddBackward0", "AddBackward0"), ("AddBackward0", "ExpBackward0"), ("AddBackward0", "MulBackward0"),
        ("AddBackward0", "PowBackward0"), ("ExpBackward0", "x"), ("MulBackward0", "w"), ("PowBackward0", "x"),
        ("y", "AddBackward0"),
    ]  # fmt: skip
