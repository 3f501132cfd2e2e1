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
from traces.data.graph import SavedValue
from traces.render.terminal import saved_text


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
    assert sum(call.count for call in backward_norms) == 1  # the one recomputation, in backward


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
    assert "tensors[0] float32[2, 3] _version=0 (freed)" in shown(trace, "graph")
    assert torch.equal(x.grad, torch.full((2, 3), 6.0))


# Complex, sparse and quantized tensors


def test_a_complex_trace_is_saved_and_reloaded(tmp_path):
    z = torch.tensor([1 + 2j, 3 - 1j], requires_grad=True)
    with traces.record(name="complex") as trace:
        loss = (z * 2).abs().sum()
        loss.backward()
    trace.save(tmp_path)  # complex numbers are not JSON: they are kept as [real, imaginary]
    data = json.loads((tmp_path / "complex.json").read_text())
    [leaf] = [node["leaf"] for node in data["graph"]["nodes"] if node["variable"] == "z"]
    assert (leaf["dtype"], leaf["values"]) == ("complex64", [[1.0, 2.0], [3.0, -1.0]])
    [into_z] = [edge["gradient"]["values"] for edge in data["graph"]["edges"] if edge["target"] == leaf_id(trace, "z")]
    assert into_z == [[pytest.approx(v) for v in pair] for pair in torch.view_as_real(z.grad).tolist()]
    assert "z = [1+2j, 3-1j] (leaf, complex64[2], AccumulateGrad)" in shown(trace, "graph")


def leaf_id(trace, variable):
    return next(node.id for node in trace.graph.nodes if node.variable == variable)


def test_a_sparse_gradient_is_shown_as_sparse():
    embedding = nn.Embedding(10, 3, sparse=True)
    with traces.record() as trace:
        loss = embedding(torch.tensor([1, 4, 4])).sum()
        loss.backward()
    [edge] = [edge for edge in trace.graph.edges if edge.target == leaf_id(trace, "weight")]
    # rows 1, 4 and 4 stored, as torch keeps them (the norm sums row 4's two entries)
    gradient = embedding.weight.grad
    assert (edge.gradient.layout, edge.gradient.nnz) == ("sparse_coo", 3) == ("sparse_coo", gradient._nnz())
    assert edge.gradient.norm == pytest.approx(gradient.to_dense().norm().item())
    assert "float32[10, 3] sparse_coo nnz=3 norm=" in shown(trace, "graph")


def test_quantized_tensors_are_summarised_and_saved(tmp_path):
    with pytest.warns(UserWarning, match="deprecated"):
        quantized = torch.quantize_per_tensor(torch.tensor([0.5, 1.0]), 0.1, 0, torch.qint8)
    from traces.data.tensors import summarize

    summary = summarize(quantized)
    assert (summary.dtype, summary.values, summary.quantized) == (
        "qint8",
        [0.5, 1.0],
        "per_tensor_affine scale=0.1 zero_point=0",
    )
    assert str(summary) == "[0.5, 1] (qint8 per_tensor_affine scale=0.1 zero_point=0)"
    w = torch.ones(2, requires_grad=True)
    with traces.record(name="quantized") as trace:
        (w * quantized.dequantize()).sum().backward()
    trace.save(tmp_path)
    ops = json.loads((tmp_path / "quantized.json").read_text())["ops"]
    assert {"shape": [2], "dtype": "qint8"} in ops[0]["inputs"]  # aten::dequantize.self


# Tensor hooks that change a gradient


def test_an_edge_shows_the_gradient_that_arrived_after_a_hook_and_what_was_sent():
    w = torch.tensor(1.0, requires_grad=True)
    w.register_hook(lambda gradient: gradient * 100)
    with traces.record() as trace:
        y = w * 3
        y.backward()
    assert w.grad.item() == 300.0
    [edge] = trace.graph.edges
    assert (edge.gradient.values, edge.hooked_from.values) == (300.0, 3.0)
    step = next(step for step in trace.backward if step.name == "AccumulateGrad")
    assert (step.arriving[0].values, step.before_hooks[0].values) == (300.0, 3.0)
    assert "grad 300 (a tensor hook changed it from 3) → w = 1" in shown(trace, "graph")
    from traces.render.mermaid import to_mermaid

    assert '-->|"grad 300 (hook changed it from 3)"|' in to_mermaid(trace)


def test_a_hook_on_an_input_fed_by_two_edges_is_noted_on_the_step():
    a = torch.tensor(2.0, requires_grad=True)
    with traces.record() as trace:
        h = a * 2
        h.register_hook(lambda gradient: gradient + 10)
        y = h * h  # two edges into h: 4 + 4 = 8 sent, 18 arrives
        y.backward()
    assert a.grad.item() == 36.0
    step = next(step for step in trace.backward if trace.graph.node(step.node).variable == "h")
    assert (step.arriving[0].values, step.before_hooks[0].values) == (18.0, 8.0)
    into_h = [edge for edge in trace.graph.edges if edge.target == step.node]
    assert [(edge.gradient.values, edge.hooked_from) for edge in into_h] == [(4.0, None), (4.0, None)]


def test_hooks_that_only_look_or_copy_are_not_noted():
    w = torch.ones(3, requires_grad=True)
    seen = []
    w.register_hook(lambda gradient: seen.append(gradient.sum().item()))  # returns None: no change
    with traces.record() as trace:
        h = w * 2
        h.register_hook(lambda gradient: gradient.clone())  # a new tensor, the same values
        h.sum().backward()
    assert seen == [6.0]
    assert all(before is None for step in trace.backward for before in step.before_hooks)
    assert all(edge.hooked_from is None for edge in trace.graph.edges)


# torch.compile


def test_a_compiled_model_stays_compiled_and_the_trace_shows_what_ran():
    import warnings

    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    compiled = torch.compile(model, backend="aot_eager")  # AOTAutograd without code generation: quick
    x = torch.randn(3, 4)
    counters.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with traces.record() as trace:
            loss = compiled(x).sum()
            loss.backward()
    assert (counters["stats"]["unique_graphs"], dict(counters["graph_break"])) == (1, {})  # compiled, in one piece
    assert not [w for w in caught if "global hooks" in str(w.message)]  # no warning the code did not cause
    names = [node.name for node in trace.graph.nodes]
    assert names == ["SumBackward0", "CompiledFunctionBackward"] + ["AccumulateGrad"] * 4  # not the eager graph
    [compiled_node] = nodes_named(trace, "CompiledFunctionBackward")
    assert compiled_node.module == "Sequential"
    assert {m.name: m.kind for m in trace.graph.modules} == {"Sequential": "compiled Sequential"}
    assert {node.variable for node in trace.graph.nodes if node.is_leaf} == {"0.weight", "0.bias", "2.weight", "2.bias"}
    functions = [entry.function for entry in trace.source]
    if not trace.source_skipped:  # where the code enters torch.compile, not what it runs inside
        assert functions[0] == "OptimizedModule.__call__" and len(functions) < 40
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled(x).sum().backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters()))


# Which module made a node


class InPlaceActivation(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 3)
        self.act = nn.ReLU(inplace=True)  # changes its input tensor: the input's node changes too

    def forward(self, x):
        return self.act(self.linear(x)).sum()


class Scale(nn.Module):
    def forward(self, x=None):
        return x * 2


class KeywordCaller(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = Scale()

    def forward(self, x):
        h = x.exp()  # made here, by KeywordCaller
        return self.scale(x=h).sum()  # a tensor passed by keyword


def module_of_nodes(model, x) -> dict[str, str]:
    with traces.record() as trace:
        model(x).backward()
    return {node.name: node.module for node in trace.graph.nodes if not node.is_leaf}


def test_an_in_place_modules_node_is_credited_to_it():
    assert module_of_nodes(InPlaceActivation(), torch.ones(2, 3)) == {
        "SumBackward0": "InPlaceActivation",
        "ReluBackward0": "act",
        "AddmmBackward0": "linear",
        "TBackward0": "linear",
    }


def test_a_module_called_with_keyword_tensors_claims_only_its_own_nodes():
    x = torch.ones(2, requires_grad=True)
    assert module_of_nodes(KeywordCaller(), x) == {
        "SumBackward0": "KeywordCaller",
        "MulBackward0": "scale",
        "ExpBackward0": "KeywordCaller",
    }


def test_a_hook_on_a_large_input_fed_by_two_edges_is_noted_without_holding_the_gradients():
    a = torch.ones(64, requires_grad=True)
    with traces.record() as trace:
        h = a * 2
        h.register_hook(lambda gradient: gradient.clamp(max=1.0))  # gradient clipping: 2 + 1 = 3 -> 1
        y = (h * h.detach()).sum() + h.sum()  # two edges into h
        y.backward()
    assert torch.equal(a.grad, torch.full((64,), 2.0))
    step = next(step for step in trace.backward if trace.graph.node(step.node).variable == "h")
    before = step.before_hooks[0]
    assert (before.shape, before.dtype, before.values) == ([64], "float32", None)  # the sum was not kept
    assert step.arriving[0].norm == pytest.approx(8.0)  # 64 ones
    assert "float32[64] norm=8 (a tensor hook changed it)" in shown(trace, "backward")
