"""The backward view's order is the order in which the autograd engine really ran the nodes."""

import pytest
import torch

from engine_order import EngineOrderWitness
from scenarios.backward import backward_pass
from scenarios.dynamic_graph import INPUT_A, DataDependentModel, eager_run
from scenarios.in_place import in_place
from scenarios.leaf_gradients import leaf_gradients
from scenarios.quickstart import quickstart
from scenarios.unsqueeze import unsqueeze_lesson


def test_the_engine_ran_the_notes_graph_as_y_b_a_w_x():
    # After y, a and b are ready together; the engine runs the one made later (b, whose node has the
    # higher sequence number) first. w's AccumulateGrad waits for both; w's and x's are ready after a.
    witness = EngineOrderWitness()
    backward_pass(tracer=witness)
    graph = witness.backward_recording.graph
    assert [graph.node(step.node).variable for step in witness.backward_recording.steps] == ["y", "b", "a", "w", "x"]
    assert witness.traced_order() == witness.engine_order


@pytest.mark.parametrize("lesson", [leaf_gradients, unsqueeze_lesson, in_place], ids=lambda f: f.__name__)
def test_the_traced_order_is_the_engines_order_in_each_autograd_lesson(lesson):
    witness = EngineOrderWitness()
    lesson(tracer=witness)
    assert witness.traced_order() == witness.engine_order
    assert len(witness.engine_order) == len(witness.backward_recording.graph.nodes)


def test_the_traced_order_is_the_engines_order_in_the_dynamic_graph():
    witness = EngineOrderWitness()
    eager_run(DataDependentModel(), torch.tensor(INPUT_A), witness)
    assert witness.traced_order() == witness.engine_order
    assert len(witness.engine_order) == 7


def test_the_traced_order_is_the_engines_order_in_the_quickstarts_first_batch(fashion_data, tmp_path, capsys):
    witness = EngineOrderWitness()
    quickstart(epochs=1, limit=64, data=fashion_data, model_path=tmp_path / "model.pth", tracer=witness)
    assert witness.traced_order() == witness.engine_order
    assert len(witness.engine_order) == 16
    # Not the order of the graph walk: the engine reaches the first layer's weight last.
    assert witness.traced_order() != sorted(witness.traced_order(), key=lambda node: int(node[1:]))


class Triple(torch.autograd.Function):
    """x * 3, whose backward notes that it ran: the node itself, between its hooks."""

    events: list[str] = []

    @staticmethod
    def forward(ctx, x):
        return x * 3

    @staticmethod
    def backward(ctx, gradient):
        Triple.events.append("the node runs")
        return gradient * 3


def test_hooks_run_in_the_documented_order():
    events = Triple.events = []
    w = torch.tensor(2.0, requires_grad=True)
    h = Triple.apply(w)
    accumulate = h.grad_fn.next_functions[0][0]
    h.register_hook(lambda gradient: events.append("tensor hook on h"))
    h.grad_fn.register_prehook(lambda grad_outputs: events.append("node pre-hook"))
    h.grad_fn.register_hook(lambda grad_inputs, grad_outputs: events.append("node post-hook"))
    w.register_hook(lambda gradient: events.append(f"tensor hook on w, w.grad {w.grad}"))
    accumulate.register_prehook(lambda grad_outputs: events.append(f"AccumulateGrad pre-hook, w.grad {w.grad}"))
    w.register_post_accumulate_grad_hook(lambda leaf: events.append(f"post-accumulate-grad hook, w.grad {leaf.grad}"))
    accumulate.register_hook(lambda grad_inputs, grad_outputs: events.append(f"AccumulateGrad post-hook, w.grad {w.grad}"))
    (h * 1).backward()
    assert type(accumulate).__name__ == "AccumulateGrad"
    assert events == [
        "tensor hook on h",
        "node pre-hook",
        "the node runs",
        "node post-hook",
        "tensor hook on w, w.grad None",
        "AccumulateGrad pre-hook, w.grad None",
        "post-accumulate-grad hook, w.grad 3.0",  # at its AccumulateGrad, once .grad is filled
        "AccumulateGrad post-hook, w.grad 3.0",
    ]
