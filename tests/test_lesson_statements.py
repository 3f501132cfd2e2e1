"""Statements the lessons and the trace make, pinned so that a wrong one fails a test.

Each test here was checked by making the wrong change it names and seeing it fail:
what the trace says AccumulateGrad does, the saved version of a tensor changed before
the graph is walked, compare.py's tolerance and op counts, the Variables pane's line
for a CopySlices result and its is_leaf, a failed save of `python -m traces`, the
atomic save's fsync before the rename, the path check of a sibling folder, and the
backward lesson's second-backward message and graph.
"""

import errno
import os

import pytest
import torch
from rich.console import Console

from pydevd_plugins.extensions.stepthrough_variables import tensor_children
from scenarios.backward import backward_pass
from traces import Tracer, walk_graph
from traces.below.nodes import CPP_NODES
from traces.render.compare import RELATIVE_TOLERANCE, differences, stable_view
from traces.basics.saving import replacing
from traces.basics.paths import is_under
from traces.data.tensors import describe
from traces.render.terminal import graph_tree
from traces.data.trace import SCHEMA_VERSION

# -- what AccumulateGrad does ------------------------------------------------------------


def test_accumulate_grad_is_described_as_what_it_does_add_into_grad_or_set_it():
    # Behaviour: the first backward sets .grad (it was None), the second adds into the same tensor.
    w = torch.ones(2, requires_grad=True)
    (w * 2).sum().backward()
    first = w.grad
    assert first.tolist() == [2.0, 2.0]
    (w * 3).sum().backward()
    assert w.grad is first and first.tolist() == [5.0, 5.0]  # added in place: not replaced
    # The description says exactly that, and nothing else.
    _, description = CPP_NODES["AccumulateGrad"]
    assert description == (
        "the end of backward for a leaf: adds the gradient that arrives into the leaf's .grad"
        " (sets it, when .grad is None)"
    )


# -- the version a saved tensor was saved at, when it changed before the graph is walked ---


def test_a_saved_tensor_changed_before_the_walk_shows_both_versions_and_the_warning():
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    s = w * 2
    product = (s * s).sum()  # MulBackward0 saves s at version 0
    s.add_(1)  # version 1, before the graph is walked
    graph = walk_graph({"product": product}, names={"w": w, "s": s})
    mul = next(node for node in graph.nodes if node.name == "MulBackward0" and node.saved)
    assert [(saved.name, saved.version, saved.version_now) for saved in mul.saved] == [("other", 0, 1), ("self", 0, 1)]
    console = Console(record=True, width=300)
    console.print(graph_tree(graph))
    text = console.export_text()
    assert (
        "saved: other float32[3] _version=0 (changed in place since: now 1, so backward will raise),"
        " self float32[3] _version=0 (changed in place since: now 1, so backward will raise)"
    ) in text


def test_an_unchanged_saved_tensor_shows_no_warning():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    graph = walk_graph({"y": (w * w).sum()}, names={"w": w})
    mul = next(node for node in graph.nodes if node.name == "MulBackward0")
    assert [(saved.version, saved.version_now) for saved in mul.saved] == [(0, None), (0, None)]


# -- compare.py: its tolerance and the op counts it compares -------------------------------


def trace_with(loss: float, mul_count: int) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": "s",
        "graph": None,
        "backward": [],
        "facts": {"loss": loss},
        "ops": [{"op": "aten::mul.Tensor", "phase": "forward", "count": mul_count}],
    }


def test_compare_forgives_a_drift_inside_its_tolerance_and_reports_one_just_outside():
    assert RELATIVE_TOLERANCE == 1e-4
    assert differences(stable_view(trace_with(2.0, 1)), stable_view(trace_with(2.0 * (1 + 5e-5), 1))) == []
    assert differences(stable_view(trace_with(2.0, 1)), stable_view(trace_with(2.0 * (1 + 3e-4), 1))) == [
        f"facts.loss: recorded 2.0, now {2.0 * (1 + 3e-4)!r}"
    ]


def test_compare_reports_a_changed_op_count():
    # the forward ops as runs of (op, count): the count changed from 2 to 3
    assert differences(stable_view(trace_with(2.0, 2)), stable_view(trace_with(2.0, 3))) == [
        "ops.forward[0][1]: recorded 2, now 3"
    ]


# -- the Variables pane: a CopySlices result, and is_leaf ------------------------------------


def test_a_tensor_changed_through_a_view_reads_grad_fn_copy_slices_in_one_line():
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    g = w * 2
    g[:2].mul_(10)
    assert describe(g) == "Tensor[3] float32 cpu = [20, 40, 6] · grad_fn=CopySlices · v1"


def test_the_variables_pane_says_a_non_leaf_that_needs_no_grad_is_a_leaf():
    computed = torch.ones(3) * 2  # made by an op, but needing no grad: a leaf
    w = torch.ones(3, requires_grad=True)
    rows = {name: value for name, value, _ in tensor_children(computed)}
    assert (rows["is_leaf"], rows["requires_grad"], rows["grad_fn"]) == (True, False, None)
    rows = {name: value for name, value, _ in tensor_children(w * 2)}
    assert (rows["is_leaf"], rows["requires_grad"]) == (False, True)


# -- python -m traces, when the trace cannot be saved -------------------------------------


def test_python_m_traces_says_in_one_line_when_the_trace_cannot_be_saved(tmp_path, monkeypatch, capsys):
    import traces.render.files
    from traces.__main__ import main

    script = tmp_path / "note.py"
    script.write_text("import torch\nw = torch.ones(2, requires_grad=True)\n(w * 2).sum().backward()\n")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(traces.render.files, "save_trace", disk_full)
    out_dir = tmp_path / "out"
    assert main(["--save-trace", str(out_dir), "--views", "graph", str(script)]) == 1
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines == [
        f"python -m traces: error: could not save the trace in {str(out_dir)!r}: [Errno 28] No space left on device"
    ]


# -- the atomic save: fsync before the rename; a sibling folder is not inside ---------------


def test_the_atomic_save_syncs_the_file_before_it_takes_the_name(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    target = tmp_path / "file.bin"
    with replacing(target) as file:
        file.write(b"data")
    assert events == ["fsync", "replace"]
    assert target.read_bytes() == b"data"


@pytest.mark.parametrize(
    "path, folder, inside",
    [
        ("/work/out/trace.json", "/work/out", True),
        ("/work/out/trace.json", "/work/out/", True),
        ("/work/out2/trace.json", "/work/out", False),  # a sibling whose name starts the same
        ("/work/out", "/work/out", False),  # the folder itself is not under itself
    ],
)
def test_a_path_is_under_a_folder_only_past_its_separator(path, folder, inside):
    assert is_under(path, folder) is inside


# -- the backward lesson: the second backward's message and the graph ------------------------


@pytest.fixture(scope="module")
def backward_traced():
    tracer = Tracer()
    facts = backward_pass(tracer=tracer)
    return facts, tracer.trace("backward", "cpu", facts)


def test_the_second_backward_message_is_torchs_first_sentence_whole(backward_traced):
    facts, _ = backward_traced
    assert facts.second_backward_error == (
        "Trying to backward through the graph a second time"
        " (or directly access saved tensors after they have already been freed)"
    )


def test_the_backward_lessons_graph_is_the_notes_graph(backward_traced):
    _, trace = backward_traced
    graph = trace.graph
    by_id = {node.id: node for node in graph.nodes}
    named = {node.id: node.variable or node.name for node in graph.nodes}
    assert sorted(named.values()) == ["a", "b", "w", "x", "y"]
    edges = sorted((named[edge.source], named[edge.target]) for edge in graph.edges)
    assert edges == [("a", "w"), ("a", "x"), ("b", "w"), ("y", "a"), ("y", "b")]
    assert {named[i]: node.name for i, node in by_id.items()} == {
        "y": "MulBackward0", "a": "AddBackward0", "b": "AddBackward0", "w": "AccumulateGrad", "x": "AccumulateGrad",
    }  # fmt: skip


# -- each lesson's traced graph, caught by the lesson's tests, not only by the recording -----

LESSON_GRAPHS = {
    "leaf_gradients": (
        ["MulBackward0", "h", "k", "w", "y"],
        [("MulBackward0", "k"), ("MulBackward0", "k"), ("h", "w"), ("k", "h"), ("y", "MulBackward0")],
    ),
    "in_place": (
        ["MulBackward0", "MulBackward0", "g", "w", "y"],
        [("MulBackward0", "g"), ("MulBackward0", "g"), ("MulBackward0", "w"), ("g", "MulBackward0"),
         ("y", "MulBackward0")],
    ),
    "unsqueeze": (
        ["MulBackward0", "SumBackward0", "SumBackward0", "w", "w_column", "w_row", "y"],
        [("MulBackward0", "w"), ("SumBackward0", "w_column"), ("SumBackward0", "w_row"),
         ("w_column", "MulBackward0"), ("w_row", "w"), ("y", "SumBackward0"), ("y", "SumBackward0")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LESSON_GRAPHS))
def test_each_lessons_traced_graph_is_the_one_its_docstring_describes(name):
    from scenarios.in_place import in_place
    from scenarios.leaf_gradients import leaf_gradients
    from scenarios.unsqueeze import unsqueeze_lesson

    lesson = {"leaf_gradients": leaf_gradients, "in_place": in_place, "unsqueeze": unsqueeze_lesson}[name]
    tracer = Tracer()
    graph = tracer.trace(name, "cpu", lesson(tracer=tracer)).graph
    named = {node.id: node.variable or node.name for node in graph.nodes}
    nodes, edges = LESSON_GRAPHS[name]
    assert sorted(named.values()) == nodes
    assert sorted((named[edge.source], named[edge.target]) for edge in graph.edges) == edges
