"""The ops and source views, module grouping, pictures, and clean-up of every hook."""

import inspect
import os
import sys

import pytest
import torch
from rich.console import Console
from torch import nn

from scenarios.backward import backward_pass
from traces import Tracer
from traces.render.files import save_trace
from traces.render.mermaid import to_mermaid
from traces.recorders.ops import fold_calls
from traces.render.picture import NO_DOT, dot_available, to_svg
from traces.recorders.source import SourceRecorder, debugger_active
from traces.render.terminal import render_ops

needs_free_tracing = pytest.mark.skipif(debugger_active(), reason="a debugger owns tracing in this run")


def traced_backward_scenario():
    tracer = Tracer()
    with tracer.recording():
        facts = backward_pass(tracer=tracer)
    return tracer.trace("backward", "cpu", facts)


@pytest.fixture(scope="module")
def trace():
    return traced_backward_scenario()


def ops_of(trace, phase):
    return [call.op for call in trace.ops if call.phase == phase for _ in range(call.count)]


def test_forward_ops_are_the_scenarios_additions_and_multiplication(trace):
    assert ops_of(trace, "forward") == [
        "aten::lift_fresh",  # torch.tensor(1.0)
        "aten::lift_fresh",  # torch.tensor(2.0)
        "aten::add.Tensor",  # a = w + x
        "aten::add.Tensor",  # b = w + 1
        "aten::mul.Tensor",  # y = a * b
    ]


def test_backward_ops_are_captured_on_cpu(trace):
    backward = ops_of(trace, "backward")
    assert backward[0] == "aten::ones_like"  # dy/dy = 1 starts backward
    assert backward.count("aten::mul.Tensor") == 2  # MulBackward0: grad * b and grad * a
    assert "aten::add.Tensor" in backward  # w's two gradients are summed


def test_ops_carry_shapes_and_dtypes(trace):
    mul = next(call for call in trace.ops if call.op == "aten::mul.Tensor")
    assert [(m.shape, m.dtype) for m in mul.inputs] == [([], "float32"), ([], "float32")]
    assert [(m.shape, m.dtype) for m in mul.outputs] == [([], "float32")]


def test_the_tracers_own_tensor_reads_are_not_recorded(trace):
    # Summarising gradients calls detach() and tolist(); none of it may show up as
    # the scenario's ops. The only detach() calls are AccumulateGrad's, one per leaf.
    assert ops_of(trace, "backward").count("aten::detach") == 2


def test_repeated_ops_are_folded_with_a_count(trace):
    folded = {row.op: row.count for row in fold_calls(trace.ops, "forward")}
    assert folded == {"aten::lift_fresh": 2, "aten::add.Tensor": 2, "aten::mul.Tensor": 1}


def test_a_phase_without_ops_says_so():
    tracer = Tracer()
    with tracer.recording():
        torch.ones(2) * 2  # no backward at all
    console = Console(record=True, width=120)
    render_ops(tracer.trace("forward_only", "cpu", {}), console)
    text = console.export_text()
    assert "aten::mul.Tensor" in text
    assert "backward │ no ATen ops ran" in text


@needs_free_tracing
def test_source_view_lists_tensor_backward_then_autograd_backward(trace):
    functions = [entry.function for entry in trace.source]
    assert functions[:2] == ["Tensor.backward", "backward"]
    tensor_backward, autograd_backward = trace.source[:2]
    assert tensor_backward.path == inspect.getsourcefile(torch.Tensor.backward)
    assert tensor_backward.line == inspect.getsourcelines(torch.Tensor.backward)[1]
    assert autograd_backward.path == inspect.getsourcefile(torch.autograd.backward)
    assert autograd_backward.depth == tensor_backward.depth + 1
    assert all(os.path.isabs(entry.path) for entry in trace.source)
    assert tensor_backward.location == f"{tensor_backward.path}:{tensor_backward.line}"


@needs_free_tracing
def test_source_view_holds_only_torch_files(trace):
    torch_dir = os.path.dirname(torch.__file__) + os.sep
    assert trace.source and all(entry.path.startswith(torch_dir) for entry in trace.source)
    assert trace.source_skipped is None


@needs_free_tracing
def test_source_view_leaves_out_the_dispatch_modes_own_lookups(trace):
    assert not [e for e in trace.source if "_library" in e.path or e.function == "OpOverload.name"]


def test_source_view_is_skipped_when_a_debugger_traces():
    def debugger(frame, event, arg):
        return debugger

    previous = sys.gettrace()
    sys.settrace(debugger)
    try:
        recorder = SourceRecorder(os.path.dirname(torch.__file__))
        recorder.start()
        torch.nn.functional.relu(torch.ones(1))
        recorder.stop()
        assert sys.gettrace() is debugger  # left alone
    finally:
        sys.settrace(previous)
    assert recorder.entries == {}
    assert "debugger" in recorder.skipped


def nothing_in_place() -> dict[str, object]:
    """No dispatch mode and no global module hook; the profile function is whatever it was
    before (a debugger's or coverage's, or none)."""
    return {
        "profile": sys.getprofile(),
        "trace": sys.gettrace(),
        "dispatch modes": 0,
        "module forward hooks": 0,
        "module forward pre-hooks": 0,
        "any global module hook": False,
    }


def hooks_in_place() -> dict[str, object]:
    return {
        "profile": sys.getprofile(),
        "trace": sys.gettrace(),
        "dispatch modes": torch._C._len_torch_dispatch_stack(),
        "module forward hooks": len(nn.modules.module._global_forward_hooks),
        "module forward pre-hooks": len(nn.modules.module._global_forward_pre_hooks),
        "any global module hook": bool(nn.modules.module._has_any_global_hook()),  # what torch.compile checks
    }


def test_every_hook_and_mode_is_removed_when_the_lesson_raises():
    before = nothing_in_place()
    assert hooks_in_place() == before  # nothing left over by the tests before
    tracer = Tracer()
    with pytest.raises(ValueError, match="lesson failed"):
        with tracer.recording():
            assert hooks_in_place() != before  # recording is on
            raise ValueError("lesson failed")
    assert hooks_in_place() == before


def test_every_hook_and_mode_is_removed_when_backward_raises():
    before = nothing_in_place()
    tracer = Tracer()
    w = torch.tensor(1.0, requires_grad=True)
    w.register_hook(lambda gradient: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        with tracer.recording():
            y = w * 2
            with tracer.backward_of({"y": y}, names={"w": w}):
                y.backward()
    assert hooks_in_place() == before


def test_recording_stops_when_the_traced_backward_ends():
    tracer = Tracer()
    with tracer.recording():
        w = torch.tensor(1.0, requires_grad=True)
        y = w * 3
        with tracer.backward_of({"y": y}, names={"w": w}):
            y.backward()
        assert (sys.getprofile(), sys.gettrace()) == (None, None) or debugger_active()
        torch.ones(1) + 1  # after the traced backward: not recorded
    assert "aten::ones" not in [call.op for call in tracer.trace("t", "cpu", {}).ops]


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stack = nn.Sequential(nn.Linear(3, 2), nn.ReLU())

    def forward(self, x):
        return self.stack(x).sum()


def traced_tiny_net():
    model = TinyNet()
    tracer = Tracer()
    with tracer.recording():
        loss = model(torch.ones(4, 3))
        with tracer.backward_of({"loss": loss}, names=dict(model.named_parameters())):
            loss.backward()
    return tracer.trace("tiny", "cpu", {})


def test_nodes_are_grouped_by_the_module_that_made_them():
    graph = traced_tiny_net().graph
    module_of = {(node.name, node.variable): node.module for node in graph.nodes}
    assert module_of == {
        ("SumBackward0", "loss"): "TinyNet",
        ("ReluBackward0", None): "stack.1",
        ("AddmmBackward0", None): "stack.0",
        ("AccumulateGrad", "stack.0.bias"): "stack.0",
        ("TBackward0", None): "stack.0",
        ("AccumulateGrad", "stack.0.weight"): "stack.0",
    }


def test_mermaid_tells_leaves_from_functions_and_labels_gradients(trace):
    text = to_mermaid(trace)
    ids = {node.variable: node.id for node in trace.graph.nodes}
    assert text.startswith("flowchart LR\n")
    assert f'{ids["w"]}(["w = 1"])' in text  # a leaf: rounded, named, valued
    assert f'{ids["y"]}["y = MulBackward0"]' in text  # a function: a box
    assert f'{ids["b"]} -->|"grad 3"| {ids["y"]}' in text  # forward arrow, backward gradient
    assert f'{ids["w"]} -->|"grad 3"| {ids["b"]}' in text


def test_mermaid_groups_a_models_nodes_in_subgraphs():
    text = to_mermaid(traced_tiny_net())
    for line in ('subgraph module0["TinyNet"]', 'subgraph module1["stack.1"]', 'subgraph module2["stack.0"]'):
        assert line in text
    assert text.count("subgraph") == 3 and text.count("  end") == 3


@pytest.mark.skipif(not dot_available(), reason="Graphviz's dot is not installed")
def test_svg_picture_has_names_values_and_gradients(trace):
    svg = to_svg(trace)
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for text in ("w = 1", "x = 2", "y = MulBackward0", "grad 3", "grad 2"):
        assert text in svg


def test_save_trace_without_dot_writes_json_and_mermaid_and_says_why(trace, tmp_path, monkeypatch):
    monkeypatch.setattr("traces.render.picture.shutil.which", lambda name: None)
    written, notes = save_trace(trace, tmp_path)
    assert [path.name for path in written] == ["backward.json", "backward.mmd", "backward.html"]
    assert notes == [NO_DOT]
    assert not (tmp_path / "backward.svg").exists()


def test_an_in_place_ops_inputs_are_shown_as_they_were_before_it_ran():
    tracer = Tracer()
    with tracer.recording():
        torch.zeros(3).unsqueeze_(0)
    call = next(call for call in tracer.trace("t", "cpu", {}).ops if call.op == "aten::unsqueeze_")
    assert (call.inputs[0].shape, call.outputs[0].shape) == ([3], [1, 3])
