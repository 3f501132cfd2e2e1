"""Eager mode builds a graph per forward; jit.trace, fx, torch.compile and torch.export cannot follow it."""

import json
import sys
import warnings

import pytest
import torch

from conftest import main_once, run_script
from scenarios.dynamic_graph import INPUT_A, INPUT_B, DataDependentModel, fresh_dynamo

GRAPH_A = ["SumBackward0", "MulBackward0", "MulBackward0", "MulBackward0", "ReluBackward0", "MulBackward0", "AccumulateGrad"]
GRAPH_B = ["SumBackward0", "MulBackward0", "MulBackward0", "NegBackward0", "MulBackward0", "AccumulateGrad"]
EAGER_A = [8.0, 0.0, 48.0]  # [1, -1, 6] -> relu -> times 2**3
EAGER_B = [8.0, -2.0, 8.0]  # [-2, 0.5, -2] -> negate -> times 2**2
BRANCH_LINE = "if h.sum() > 0:"
LOOP_LINE = "for _ in range(int(x.abs().max())):"

needs_dynamo = pytest.mark.skipif(
    not torch._dynamo.is_dynamo_supported(),
    reason="torch.compile and torch.export need Dynamo, which does not support this Python "
    "(torch._dynamo.is_dynamo_supported() is False)",
)


@pytest.fixture(scope="module")
def narrated():
    """`python scenarios/dynamic_graph.py`, its main once in this process: the facts and what it printed."""
    return main_once("dynamic_graph", [])


@pytest.fixture(scope="module")
def facts(narrated):
    return narrated[0]


# Eager mode


def test_two_inputs_give_two_different_graphs(facts):
    assert facts.eager_a.nodes == GRAPH_A  # relu, and three turns of the loop
    assert facts.eager_b.nodes == GRAPH_B  # negate, and two turns
    assert (facts.eager_a.output, facts.eager_b.output) == (EAGER_A, EAGER_B)


def test_each_graph_is_built_by_its_forward(facts):
    # Two forward calls on the same input share no node but the weight's AccumulateGrad,
    # which belongs to the leaf, not to a graph.
    assert facts.shared_by_two_calls == ["AccumulateGrad"]
    # Right after forward, before any backward, the graph is there and holds its saved tensors.
    assert facts.eager_a.saved_after_forward == [
        "MulBackward0.other",
        "MulBackward0.other",
        "MulBackward0.other",
        "ReluBackward0.result",
        "MulBackward0.self",
    ]
    assert facts.eager_b.saved_after_forward == ["MulBackward0.other", "MulBackward0.other", "MulBackward0.self"]


def test_backward_frees_each_graph(facts):
    assert facts.eager_a.freed_by_backward == facts.eager_a.saved_after_forward
    assert facts.eager_b.freed_by_backward == facts.eager_b.saved_after_forward
    assert all(saved.freed for node in facts.eager_a.graph.nodes for saved in node.saved if saved.shape)
    assert facts.saved_read_after_backward.kind == "RuntimeError"
    assert facts.saved_read_after_backward.text.startswith(
        "Trying to backward through the graph a second time (or directly access saved tensors after they have already been freed)"
    )


def test_gradients_follow_the_graph_that_ran(facts):
    # A: d/dw of sum(8 * relu(x * w)) = 8 * x where x * w > 0; B: d/dw of sum(-4 * x * w) = -4 * x
    assert facts.eager_a.weight_grad == [8.0, 0.0, 24.0]
    assert facts.eager_b.weight_grad == [8.0, -4.0, 4.0]


# torch.jit.trace


def test_jit_trace_is_deprecated(facts):
    assert facts.jit_deprecation.kind == "FutureWarning"
    assert "Please switch to `torch.compile` or `torch.export`" in facts.jit_deprecation.text
    if sys.version_info < (3, 14):
        assert facts.jit_deprecation.text.startswith("`torch.jit.trace` is deprecated")


def test_jit_trace_warns_where_python_reads_a_tensor_value(facts):
    assert [(m.kind, m.text, m.line) for m in facts.jit_warnings] == [
        ("TracerWarning", "Converting a tensor to a Python boolean might cause the trace to be incorrect", BRANCH_LINE),
        ("TracerWarning", "Converting a tensor to a Python integer might cause the trace to be incorrect", LOOP_LINE),
    ]


def test_jit_trace_warning_categories():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.jit.trace(DataDependentModel(), (torch.tensor(INPUT_A),), check_trace=False)
    seen = {(w.category, str(w.message).split(". ")[0]) for w in caught}
    assert (torch.jit.TracerWarning, "Converting a tensor to a Python boolean might cause the trace to be incorrect") in seen
    assert (torch.jit.TracerWarning, "Converting a tensor to a Python integer might cause the trace to be incorrect") in seen
    assert any(issubclass(category, FutureWarning) for category, _ in seen)


def test_jit_trace_records_the_branch_it_took_and_unrolls_the_loop(facts):
    assert facts.jit_ops == ["aten::mul", "aten::relu", "aten::mul", "aten::mul", "aten::mul"]
    assert "torch.relu" in facts.jit_code and "neg" not in facts.jit_code


def test_jit_trace_silently_replays_it_for_another_input(facts):
    assert facts.jit_output_a == EAGER_A
    assert facts.jit_output_b == [0.0, 4.0, 0.0]  # relu([-2, 0.5, -2]) * 2**3
    assert facts.jit_output_b != facts.eager_b.output


# torch.fx.symbolic_trace


def test_fx_symbolic_trace_refuses_data_dependent_control_flow(facts):
    assert facts.fx_error.kind == "TraceError"
    assert facts.fx_error.text == "symbolically traced variables cannot be used as inputs to control flow"
    assert facts.fx_error.line == BRANCH_LINE
    with pytest.raises(torch.fx.proxy.TraceError, match="cannot be used as inputs to control flow"):
        torch.fx.symbolic_trace(DataDependentModel())


# torch.compile and torch.export


@needs_dynamo
def test_dynamo_explain_reports_a_graph_break_at_the_branch_and_the_loop(facts):
    assert facts.explain_graph_count == 3
    assert [(m.text, m.line) for m in facts.explain_graph_breaks] == [
        ("generic_jump TensorVariable()", BRANCH_LINE),
        ("Unsupported Tensor.item() call with capture_scalar_outputs=False", LOOP_LINE),
    ]


@needs_dynamo
def test_torch_compile_splits_the_model_recompiles_for_b_and_stays_correct(facts):
    assert facts.graphs_compiled_per_call == {"A": 3, "B": 2, "A again": 0}
    assert len(facts.compiled_graphs) == 5
    assert ".relu()" in facts.compiled_graphs[1] and "-l_h_" in facts.compiled_graphs[3]
    assert facts.compiled_output_a == EAGER_A
    assert facts.compiled_output_b == EAGER_B


@needs_dynamo
def test_torch_export_refuses_to_guard_on_a_data_dependent_value(facts):
    assert facts.export_error.kind == "GuardOnDataDependentSymNode"
    assert facts.export_error.text.startswith("Could not guard on data-dependent expression")
    assert facts.export_error.line == BRANCH_LINE


@needs_dynamo
def test_strict_torch_export_refuses_data_dependent_branching(facts):
    assert facts.strict_export_error.kind == "Unsupported"
    assert facts.strict_export_error.text == "Data-dependent branching"
    assert facts.strict_export_error.line == BRANCH_LINE
    assert "Hint: Use `torch.cond` to express dynamic control flow." in facts.strict_export_error.hints


@needs_dynamo
def test_dynamo_is_left_as_it_was_found_also_on_error(facts):
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    def compiled_code() -> list:
        return _debug_get_cache_entry_list(DataDependentModel.forward.__code__)

    assert compiled_code() == []  # the lesson left nothing behind
    compiled = torch.compile(DataDependentModel(), backend="eager")
    stderr = sys.stderr
    with pytest.raises(ValueError, match="fails inside"):
        with fresh_dynamo():
            compiled(torch.tensor(INPUT_A))
            assert compiled_code() != [] and sys.stderr is not stderr
            raise ValueError("fails inside")
    assert compiled_code() == []
    assert sys.stderr is stderr


# The command line


@pytest.fixture(scope="module")
def trace_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trace")
    result = run_script("scenarios/dynamic_graph.py", "--trace", "--save-trace", str(directory))
    assert result.returncode == 0, result.stderr
    return result, json.loads((directory / "dynamic_graph.json").read_text())


def test_trace_shows_both_eager_graphs_side_by_side_and_the_three_captures(trace_run):
    result, _ = trace_run
    headers = [line for line in result.stdout.splitlines() if f"x = A = {INPUT_A}" in line]
    assert any(f"x = B = {INPUT_B}" in line for line in headers)  # on the same line: side by side
    for title in ("torch.jit.trace on A", "torch.fx.symbolic_trace: no graph", "torch.compile: graphs split"):
        assert title in result.stdout
    assert "traced(B) = [0.0, 4.0, 0.0], but eager B = [8.0, -2.0, 8.0]: silently wrong" in result.stdout
    assert result.stderr == ""  # Dynamo's and export's logs stay off the terminal


def test_saved_trace_has_the_traced_backward_of_a_and_the_facts(trace_run):
    _, data = trace_run
    assert [node["name"] for node in data["graph"]["nodes"]] == GRAPH_A
    assert len(data["backward"]) == len(GRAPH_A)
    assert data["facts"]["eager_b"]["nodes"] == GRAPH_B
    assert data["facts"]["jit_output_b"] == [0.0, 4.0, 0.0]


def test_the_narrative_states_each_fact_with_its_value(narrated):
    facts, lines = narrated
    saved = ["MulBackward0.other", "MulBackward0.other", "MulBackward0.other", "ReluBackward0.result", "MulBackward0.self"]
    expected = [
        "model: h = x * weight; if h.sum() > 0: h = relu(h) else: h = -h; then h = h * 2, int(max |x|) times",
        f"Eager, x = A = {INPUT_A}: output {EAGER_A}; ReluBackward0 from the branch, 3 loop turns",
        f"  its graph, built by that forward: {GRAPH_A}",
        f"Eager, x = B = {INPUT_B}: output {EAGER_B}; NegBackward0 from the branch, 2 loop turns",
        f"  its graph, built by that forward: {GRAPH_B}",
        "Two inputs, two graphs: the node lists differ = True",
        "Two calls on A build two graphs; the only node they share: ['AccumulateGrad']"
        " (the weight's: it belongs to the leaf, not to a graph)",
        f"Saved tensors, readable after forward (A): {saved}",
        f"Freed by backward (A):                    {saved}",
        "Reading y.grad_fn._saved_other after backward: RuntimeError: " + facts.saved_read_after_backward.text,
        f"torch.jit.trace(model, A) is deprecated: FutureWarning: {facts.jit_deprecation.text}",
        "  it warns: TracerWarning: Converting a tensor to a Python boolean might cause the trace to be incorrect"
        f"  (at `{BRANCH_LINE}`)",
        "  it warns: TracerWarning: Converting a tensor to a Python integer might cause the trace to be incorrect"
        f"  (at `{LOOP_LINE}`)",
        "  and records only the ops that ran for A, no branch and no loop:"
        " ['aten::mul', 'aten::relu', 'aten::mul', 'aten::mul', 'aten::mul']",
        f"  traced(A) = {EAGER_A}, the same as eager",
        f"  traced(B) = [0.0, 4.0, 0.0], but eager B = {EAGER_B}: silently wrong",
        "torch.fx.symbolic_trace(model) refuses: TraceError:"
        f" symbolically traced variables cannot be used as inputs to control flow  (at `{BRANCH_LINE}`)",
    ]
    if facts.compile_supported:
        expected += [
            "torch._dynamo.explain(model)(A): 3 graphs, 2 graph breaks:",
            f"  graph break: generic_jump TensorVariable()  (at `{BRANCH_LINE}`)",
            f"  graph break: Unsupported Tensor.item() call with capture_scalar_outputs=False  (at `{LOOP_LINE}`)",
            "torch.compile(model) captured 3 graphs for A, 2 more for B (the other branch; a new loop count fails"
            " a guard, so it recompiles), 0 for A again",
            f"  compiled(A) = {EAGER_A}, compiled(B) = {EAGER_B}: the same as eager; Python runs the branch and"
            " the loop between the graphs",
            "torch.export.export(model, (A,)) refuses: GuardOnDataDependentSymNode:"
            f" {facts.export_error.text}  (at `{BRANCH_LINE}`)",
            f"  with strict=True (Dynamo): Unsupported: Data-dependent branching  (at `{BRANCH_LINE}`)",
            "  Hint: Use `torch.cond` to express dynamic control flow.",
        ]
    else:
        expected.append(
            "torch.compile and torch.export: Dynamo does not support this Python (is_dynamo_supported() is False)"
        )
    assert lines == expected
