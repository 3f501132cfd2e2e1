"""Tracing is right, and changes nothing, in the corner cases: saved-tensor hooks and
checkpoint, custom Functions, complex, sparse and quantized tensors, tensor hooks that
change a gradient, torch.compile, in-place modules and keyword arguments."""

import io
import json

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.checkpoint import checkpoint

import traces
from traces.graph import SavedValue
from traces.terminal import saved_text


def shown(trace, *views: str) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    trace.show(console, views=views or ("graph", "backward", "ops", "source"))
    return console.file.getvalue()


def nodes_named(trace, name):
    return [node for node in trace.graph.nodes if node.name == name]


# Saved tensors are read without unpacking them


class Checkpointed(nn.Module):
    """A linear layer, then a checkpointed segment with a BatchNorm: backward re-runs the segment."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 3)
        self.norm = nn.BatchNorm1d(3)

    def segment(self, h):
        return self.norm(h * 2).relu()

    def forward(self, x):
        return checkpoint(self.segment, self.linear(x), use_reentrant=False).sum()


def checkpointed_run(trace_it: bool):
    torch.manual_seed(0)
    model, x = Checkpointed(), torch.randn(4, 3)
    if trace_it:
        with traces.record() as trace:
            model(x).backward()
    else:
        model(x).backward()
        trace = None
    return model, trace


def test_checkpoint_is_not_recomputed_by_the_tracer():
    plain, _ = checkpointed_run(trace_it=False)
    traced, trace = checkpointed_run(trace_it=True)
    # Forward once, recomputed once in backward: 2 either way (reading the saved values
    # through their unpack hook would re-run the segment once per saved tensor).
    assert plain.norm.num_batches_tracked.item() == traced.norm.num_batches_tracked.item() == 2
    assert torch.equal(plain.norm.running_mean, traced.norm.running_mean)
    for (name, a), b in zip(plain.named_parameters(), traced.parameters()):
        assert torch.equal(a.grad, b.grad), name
    relu = nodes_named(trace, "ReluBackward0")[0]
    assert [(s.name, s.packed) for s in relu.saved] == [("result", "by torch.utils.checkpoint, recomputed in backward")]
    backward_norms = [call for call in trace.ops if call.op == "aten::native_batch_norm" and call.phase == "backward"]
    assert len(backward_norms) == 1  # the one recomputation, in backward


def test_a_pack_hooks_value_is_described_and_the_unpack_hook_never_called():
    unpacked = []

    def unpack(packed):
        unpacked.append(packed)
        return packed

    w = torch.ones(3, requires_grad=True)
    with traces.record() as trace:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t * 1, unpack):
            y = (w * w).sum()
        calls_before_backward = len(unpacked)
        y.backward()
    assert calls_before_backward == 0  # describing the graph unpacked nothing
    assert len(unpacked) == 2  # backward itself unpacks both factors of w * w, once each
    mul = nodes_named(trace, "MulBackward0")[0]
    assert {s.name: s.packed for s in mul.saved} == {"other": "as float32[3] on cpu", "self": "as float32[3] on cpu"}
    assert saved_text(SavedValue("self", packed="as float32[3] on cpu")) == "self packed as float32[3] on cpu"


def test_a_saved_value_modified_in_place_is_still_described():
    # Unpacking it would raise "modified by an inplace operation"; reading it does not.
    w = torch.ones(3, requires_grad=True)
    with traces.record() as trace:
        h = w.exp()
        y = h * 2
        h.add_(1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()
    assert {s.name: s.shape for s in nodes_named(trace, "ExpBackward0")[0].saved} == {"result": [3]}


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x, scale)
        return x * x * scale

    @staticmethod
    def backward(ctx, grad):
        x, scale = ctx.saved_tensors
        return grad * 2 * x * scale, None


def test_a_custom_functions_saved_tensors_are_shown_then_freed():
    x = torch.ones(2, 3, requires_grad=True)
    with traces.record() as trace:
        y = Square.apply(x, torch.tensor(3.0))
        y.sum().backward()
    [node] = nodes_named(trace, "SquareBackward")
    assert [(s.name, s.shape, s.freed) for s in node.saved] == [("tensors[0]", [2, 3], True), ("tensors[1]", [], True)]
    assert "tensors[0] float32[2, 3] (freed)" in shown(trace, "graph")
    assert torch.equal(x.grad, torch.full((2, 3), 6.0))
