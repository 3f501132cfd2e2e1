"""The graph and backward views, on the study note's graph and on small cases."""

import json

import pytest
import torch

from scenarios.backward import backward_pass
from traces import Tracer, record_backward, walk_graph
from traces.render.files import save_trace
from traces.render.json_file import trace_to_dict
from traces.data.trace import SCHEMA_VERSION


def note_graph():
    w = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor(2.0, requires_grad=True)
    a = w + x
    b = w + 1
    y = a * b
    return w, x, a, b, y


@pytest.fixture(scope="module")
def trace():
    tracer = Tracer()
    facts = backward_pass(tracer=tracer)
    return tracer.trace("backward", "cpu", facts)


def by_variable(graph):
    return {node.variable: node for node in graph.nodes}


def test_graph_has_mul_two_adds_and_the_leaves_of_w_and_x(trace):
    names = sorted(node.name for node in trace.graph.nodes)
    assert names == ["AccumulateGrad", "AccumulateGrad", "AddBackward0", "AddBackward0", "MulBackward0"]
    nodes = by_variable(trace.graph)
    assert (nodes["y"].name, nodes["a"].name, nodes["b"].name) == ("MulBackward0", "AddBackward0", "AddBackward0")
    assert nodes["w"].is_leaf and nodes["x"].is_leaf
    assert nodes["w"].leaf.values == 1.0 and nodes["x"].leaf.values == 2.0


def test_graph_edges(trace):
    graph = trace.graph
    ids = {node.variable: node.id for node in graph.nodes}
    edges = {(e.source, e.target, e.output_nr, e.input_nr) for e in graph.edges}
    # b = w + 1: the constant 1 needs no gradient, so b has one edge, not two.
    assert edges == {
        (ids["y"], ids["a"], 0, 0),
        (ids["y"], ids["b"], 1, 0),
        (ids["a"], ids["w"], 0, 0),
        (ids["a"], ids["x"], 1, 0),
        (ids["b"], ids["w"], 0, 0),
    }


def test_a_node_reached_twice_appears_once():
    w, x, a, b, y = note_graph()
    graph = walk_graph({"y": y}, names={"w": w})
    assert [node.variable for node in graph.nodes].count("w") == 1
    assert len(graph.nodes) == 5


def test_saved_tensors_have_shapes_and_are_freed_by_backward(trace):
    mul = by_variable(trace.graph)["y"]
    assert {(s.name, tuple(s.shape), s.freed) for s in mul.saved} == {("self", (), True), ("other", (), True)}


def test_saved_tensors_are_alive_before_backward():
    w, x, a, b, y = note_graph()
    mul = by_variable(walk_graph({"y": y}))[  "y"]
    assert {s.name: s.freed for s in mul.saved} == {"self": False, "other": False}


def test_backward_order_respects_every_edge(trace):
    order = {step.node: step.order for step in trace.backward}
    assert len(order) == 5
    for edge in trace.graph.edges:
        assert order[edge.source] < order[edge.target], edge


def test_gradients_on_edges_are_3_and_2_into_w(trace):
    ids = {node.variable: node.id for node in trace.graph.nodes}
    into_w = {e.source: e.gradient.values for e in trace.graph.edges if e.target == ids["w"]}
    assert into_w == {ids["a"]: 2.0, ids["b"]: 3.0}


def test_5_and_2_arrive_at_w_and_x(trace):
    arriving = {trace.graph.node(s.node).variable: s.arriving[0].values for s in trace.backward}
    assert arriving["w"] == 5.0 and arriving["x"] == 2.0
    assert arriving["y"] == 1.0  # backward starts from dy/dy = 1


def test_hooks_are_removed_after_backward():
    w, x, a, b, y = note_graph()
    with record_backward({"y": y}) as recording:
        y.backward(retain_graph=True)
    assert len(recording.steps) == 5
    y.backward()
    assert len(recording.steps) == 5  # the second backward was not recorded


def test_hooks_are_removed_when_backward_raises():
    w, x, a, b, y = note_graph()

    def fail(gradient):
        raise ValueError("a hook failed")

    failing = w.register_hook(fail)
    with pytest.raises(ValueError, match="a hook failed"):
        with record_backward({"y": y}) as recording:
            y.backward(retain_graph=True)
    recorded = len(recording.steps)
    assert recorded >= 1
    failing.remove()
    y.backward()
    assert len(recording.steps) == recorded
    assert w.grad.item() == 5.0


def test_a_tracer_records_one_backward_pass():
    w, x, a, b, y = note_graph()
    tracer = Tracer()
    with tracer.backward_of({"y": y}):
        y.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="records one backward pass"):
        tracer.backward_of({"y": y})


def test_json_has_the_documented_keys(trace, tmp_path):
    written, _ = save_trace(trace, tmp_path)
    path = tmp_path / "backward.json"
    assert written[0] == path
    data = json.loads(path.read_text())
    assert list(data)[0] == "schema_version" and data["schema_version"] == SCHEMA_VERSION == 6
    assert {"scenario", "torch_version", "device", "graph", "backward", "facts"} <= data.keys()
    assert data["scenario"] == "backward" and data["torch_version"] == torch.__version__
    assert {"outputs", "nodes", "edges", "modules", "inputs", "returns"} == data["graph"].keys()
    assert data["facts"]["w_grad"] == 5.0
    steps = data["backward"]
    assert [s["order"] for s in steps] == list(range(5))
    assert steps[0]["arriving"][0]["values"] == 1.0
    assert set(data["files"]) <= {"backward.mmd", "backward.html", "backward.svg"} and "backward.mmd" in data["files"]
    assert data == json.loads(json.dumps(trace_to_dict(trace, data["files"])))
    # Short records on one line: under half the lines of json.dumps(indent=2), none of them long.
    lines = path.read_text().splitlines()
    assert len(lines) * 2 < len(json.dumps(data, indent=2).splitlines())
    assert max(len(line.strip()) for line in lines) <= 240
    assert '{"name": "alpha", "shape": null, "dtype": null, "value": "1", "freed": false, "packed": null, ' in path.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_large_gradients_are_summarised_by_norm():
    w = torch.ones(5, 5, requires_grad=True)
    y = (w * 2).sum()
    with record_backward({"y": y}, names={"w": w}) as recording:
        y.backward()
    last = recording.steps[-1]
    assert last.arriving[0].values is None
    assert last.arriving[0].shape == [5, 5]
    assert last.arriving[0].norm == pytest.approx(10.0)  # 25 entries of 2


def test_a_saved_value_freed_before_the_walk_shows_only_its_name():
    from traces.data.graph import SavedValue
    from traces.render.terminal import saved_text

    assert saved_text(SavedValue("other", freed=True)) == "other (freed)"
    assert saved_text(SavedValue("self", shape=[2], dtype="float32", freed=True)) == "self float32[2] (freed)"
    assert saved_text(SavedValue("alpha", value="1")) == "alpha=1"


def test_atomic_writes_get_the_usual_permissions_not_mkstemps_private_ones(tmp_path):
    from traces.basics.saving import current_umask, write_atomically

    path = write_atomically(tmp_path / "out.json", "{}\n")
    assert path.read_text() == "{}\n"
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()
