"""torch.inference_mode against torch.no_grad: inference tensors have no version counter
and cannot be saved for backward; clone() gives an ordinary tensor."""

import pytest
import torch
from conftest import run_main

from pydevd_plugins.extensions.stepthrough_variables import tensor_children
from scenarios.inference_mode import INPLACE_OUTSIDE_ERROR, NO_VERSION_ERROR, SAVE_ERROR, inference_mode
from traces import Tracer

SAVE_ERROR_WHOLE = (
    "Inference tensors cannot be saved for backward. Please do not use Tensors created in inference mode in"
    " computation tracked by autograd. To work around this, you can make a clone to get a normal tensor and use"
    " it in autograd, or use `torch.no_grad()` instead of `torch.inference_mode()`."
)


@pytest.fixture(scope="module")
def traced():
    tracer = Tracer()
    facts = inference_mode(tracer=tracer)
    return facts, tracer.trace("inference_mode", "cpu", facts)


@pytest.fixture(scope="module")
def facts(traced):
    return traced[0]


def test_both_turn_grad_off_and_only_one_is_inference_mode(facts):
    assert facts.inside == {
        "no_grad": {"grad": False, "inference_mode": False},
        "inference_mode": {"grad": False, "inference_mode": True},
    }
    assert torch.is_inference_mode_enabled() is False  # and it ends with its block


def test_neither_records_but_only_inference_mode_makes_inference_tensors(facts):
    assert facts.result_inside == {
        "no_grad": {"grad_fn": None, "requires_grad": False, "is_inference": False},
        "inference_mode": {"grad_fn": None, "requires_grad": False, "is_inference": True},
    }


def test_an_inference_tensor_has_no_version_counter(facts):
    assert facts.no_grad_version == 0
    assert facts.no_version_error == NO_VERSION_ERROR


def test_an_inference_tensor_cannot_be_saved_for_backward_and_a_no_grad_one_can(facts):
    assert facts.no_grad_saved_grad == [1.0, 1.0]
    assert facts.save_error == SAVE_ERROR_WHOLE
    assert facts.save_error.startswith(SAVE_ERROR)


def test_an_op_that_saves_nothing_may_use_an_inference_tensor():
    # The refusal is about saving: w + made saves neither operand and works.
    w = torch.ones(2, requires_grad=True)
    with torch.inference_mode():
        made = torch.ones(2)
    (w + made).sum().backward()
    assert w.grad.tolist() == [1.0, 1.0]


def test_an_in_place_change_outside_inference_mode_is_refused_after_it_wrote(facts):
    assert facts.inplace_outside_error == INPLACE_OUTSIDE_ERROR
    assert facts.made_after_refused_add == [2.0, 2.0]


def test_clone_is_the_way_out(facts):
    assert (facts.cloned_is_inference, facts.cloned_version) == (False, 1)
    assert facts.cloned_grad == [1.0, 1.0]


def test_the_variables_pane_shows_no_version_for_an_inference_tensor():
    with torch.inference_mode():
        made = torch.ones(2)
    rows = {name: value for name, value, _ in tensor_children(made)}
    assert str(rows["version"]) == "none: an inference tensor"
    assert {name: value for name, value, _ in tensor_children(made.clone())}["version"] == 1


def test_the_trace_shows_the_clone_saved_for_backward(traced):
    _, trace = traced
    mul = next(node for node in trace.graph.nodes if node.name == "MulBackward0")
    assert [(s.name, s.version, s.freed) for s in mul.saved] == [("other", 1, True), ("self", None, False)]


def test_the_narrative_states_each_fact_with_its_value(monkeypatch, capsys):
    facts, lines = run_main("inference_mode", [], monkeypatch, capsys)
    assert lines == [
        "w = [1, 2] (requires_grad); plain = torch.ones(2) under torch.no_grad(),"
        " made = torch.ones(2) under torch.inference_mode()",
        "Inside each block (grad enabled, inference mode enabled): {'no_grad': {'grad': False, 'inference_mode':"
        " False}, 'inference_mode': {'grad': False, 'inference_mode': True}}",
        "w * 2 made inside each: {'no_grad': {'grad_fn': None, 'requires_grad': False, 'is_inference': False},"
        " 'inference_mode': {'grad_fn': None, 'requires_grad': False, 'is_inference': True}}",
        f"plain._version = 0; made._version raises RuntimeError: {NO_VERSION_ERROR}",
        "(w * plain).sum().backward() saves plain and works: w.grad = [1.0, 1.0]",
        f"w * made would save made: RuntimeError: {SAVE_ERROR_WHOLE}",
        f"made.add_(1) after the block: RuntimeError: {INPLACE_OUTSIDE_ERROR} Yet it wrote: made = [2.0, 2.0]",
        "cloned = made.clone(), taken outside the block before that: is_inference = False, _version = 1"
        " (a counter again); (w * cloned).sum().backward() gives w.grad = [1.0, 1.0]",
    ]
    assert facts.cloned_grad == [1.0, 1.0]


def test_the_with_line_runs_inference_mode_enter_with_mode_true(monkeypatch):
    # The README's breakpoint: torch/autograd/grad_mode.py inference_mode.__enter__, where self.mode is True.
    modes = []
    real_enter = torch.inference_mode.__enter__

    def watched(self):
        modes.append(self.mode)
        return real_enter(self)

    monkeypatch.setattr(torch.inference_mode, "__enter__", watched)
    inference_mode()
    assert modes == [True]


def test_the_traced_graph_is_the_clones_product(traced):
    _, trace = traced
    named = {node.id: node.variable or node.name for node in trace.graph.nodes}
    edges = sorted((named[edge.source], named[edge.target]) for edge in trace.graph.edges)
    assert sorted(named.values()) == ["MulBackward0", "w", "y"]
    assert edges == [("MulBackward0", "w"), ("y", "MulBackward0")]
