"""Traces of real models (torchvision, random weights) read on one screen: grouped by module,
folded, within the terminal's width; and the graph under them is complete and right."""

import io
import math
import re

import pytest
import torch
from rich.console import Console

import traces
from traces.render.picture import dot_available, to_svg
from traces.render.terminal import graph_tree

LINE_LIMITS = {"resnet18": 400, "densenet121": 600}
# A link alone on its line (a path:line, possibly numbered, or a URL): never cut, so it stays a link.
PATH_LINE = re.compile(r"^\s*(\[\d+\] )?(\S+:\d+|https://\S+)$")


# The models' traces are made once per session (tests/conftest.py), shared with
# tests/test_readable.py and tests/test_page.py: one worker runs all of them.
pytestmark = pytest.mark.xdist_group("model_traces")


def traced(model_traces, name: str):
    """The model's trace as `python -m traces` makes it: building the model, forward, backward."""
    made = model_traces(name)
    return made.trace, made.model, made.loss


@pytest.fixture
def resnet(model_traces):
    return traced(model_traces, "resnet18")


@pytest.fixture
def densenet(model_traces):
    return traced(model_traces, "densenet121")


@pytest.fixture(params=["resnet18", "densenet121"])
def model_trace(request):
    return request.getfixturevalue({"resnet18": "resnet", "densenet121": "densenet"}[request.param]), request.param


def shown(trace, width: int, **options) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    trace.show(console, **options)
    return console.file.getvalue()


def next_functions_walk(loss):
    """Nodes and edges by PyTorch's own links, walked here independently of traces.data.graph."""
    nodes, edges, stack = {}, 0, [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if id(fn) in nodes:
            continue
        nodes[id(fn)] = fn
        for next_fn, _ in fn.next_functions:
            if next_fn is not None:
                edges += 1
                stack.append(next_fn)
    return len(nodes), edges


def test_node_and_edge_counts_equal_a_next_functions_walk(model_trace):
    (trace, _, loss), _ = model_trace
    assert (len(trace.graph.nodes), len(trace.graph.edges)) == next_functions_walk(loss)


def test_every_parameters_edge_gradient_is_its_grad(model_trace):
    (trace, model, _), _ = model_trace
    graph = trace.graph
    leaves = {node.variable: node.id for node in graph.nodes if node.is_leaf}
    parameters = dict(model.named_parameters())
    assert set(leaves) == set(parameters)
    for name, parameter in parameters.items():
        [edge] = [edge for edge in graph.edges if edge.target == leaves[name]]
        assert edge.gradient.shape == list(parameter.grad.shape)
        assert edge.gradient.norm == pytest.approx(parameter.grad.norm().item(), rel=1e-5), name


@pytest.mark.parametrize("width", [80, 120])
def test_the_whole_default_trace_fits_its_line_limit_and_the_width(model_trace, width):
    (trace, _, _), name = model_trace
    lines = shown(trace, width).splitlines()
    assert len(lines) <= LINE_LIMITS[name]
    too_wide = [line for line in lines if len(line) > width and not PATH_LINE.match(line)]
    assert too_wide == []


def test_the_module_tree_counts_nodes_and_gives_each_modules_gradient_norm(resnet):
    trace, model, _ = resnet
    text = shown(trace, 120, views=("graph",))
    fc_norm = math.sqrt(model.fc.weight.grad.norm() ** 2 + model.fc.bias.grad.norm() ** 2)
    assert f"fc (Linear)  4 nodes: TBackward0, AddmmBackward0, AccumulateGrad x2 · grad norm {fc_norm:.4g}" in text
    assert "ResNet  132 nodes" in text
    assert "Autograd graph of loss (SumBackward0): 133 nodes, 140 edges, by module, 2 levels deep" in text


def test_repeated_blocks_are_folded_into_the_first(resnet):
    text = shown(resnet[0], 120, views=("graph",))
    assert "    1: same structure as 0" in text  # layer1.1 under layer1
    assert "  layer3 … layer4 (2 modules): same structure as layer2" in text
    assert "layer4 (Sequential)" not in text


def test_depth_opens_more_levels(resnet):
    trace = resnet[0]
    shallow, deep = shown(trace, 120, views=("graph",), depth=1), shown(trace, 120, views=("graph",), depth=3)
    assert "layer1 (Sequential)  26 nodes: ConvolutionBackward0 x4" in shallow
    assert "(BasicBlock)" not in shallow
    assert "conv1 (Conv2d)  2 nodes: ConvolutionBackward0, AccumulateGrad" in deep
    assert "itself: AddBackward0" in deep  # a block's own node: the residual addition


def test_backward_is_one_row_per_module_in_the_order_it_ran(resnet):
    text = shown(resnet[0], 80, views=("backward",))
    # At 80 columns each row's gradient goes under its name: a row starts with its steps and a name.
    rows = [line.split()[1] for line in text.splitlines() if re.match(r"^\s*\d+(-\d+)?\s{3}[a-zA-Z]", line)]
    assert rows[:3] == ["loss", "fc", "ResNet"]
    assert rows.index("layer4.1") < rows.index("layer4.0") < rows.index("layer1.0") < rows.index("conv1")
    assert len(rows) == len(set(rows)) == 16  # no two rows alike


def test_small_graphs_keep_their_node_by_node_views_with_whole_names_at_80_columns():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with traces.record() as trace:
        model(torch.ones(5, 3)).sum().backward()
    text = shown(trace, 80, views=("graph", "backward"))
    assert "Autograd graph (gradients flow from the output down to the leaves)" in text
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert re.search(rf"^step \d+: {re.escape(name)} \(AccumulateGrad\)", text, re.M)  # a step starts with the whole name
    wide = shown(trace, 120, views=("backward",))
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert f"│ {name} " in wide  # from 120 columns, a table whose rows start with the whole name
    assert all(len(line) <= 80 or PATH_LINE.match(line) for line in text.splitlines())


def test_the_model_picture_fits_a_1600_pixel_window_at_full_size(model_trace):
    if not dot_available():
        pytest.skip("Graphviz's dot is not installed")
    (trace, _, _), name = model_trace
    svg = to_svg(trace)
    width = float(re.search(r'<svg width="([\d.]+)pt"', svg).group(1))
    assert width * 4 / 3 <= 1600  # points to pixels
    assert 'viewBox="0.00 0.00' in svg and "scale(1 1)" in svg  # drawn at full size: labels legible
    assert "layer1.0 (BasicBlock)" in svg or "features.denseblock1 (_DenseBlock)" in svg


def test_a_chain_of_10000_nodes_renders():
    with traces.record() as trace:
        w = torch.ones(2, requires_grad=True)
        x = w
        for _ in range(10_000):
            x = x * 1.0001
        loss = x.sum()
        loss.backward()
    text = shown(trace, 80, views=("graph", "backward"))
    assert "MulBackward0 x10000" in text
    assert "1-10000" in text  # one backward row for the 10,000 steps on that line
    assert len(text.splitlines()) < 30
    graph_tree(trace.graph)  # the node-by-node tree is built without recursion too


def test_an_op_with_64_inputs_is_one_row():
    parts = [torch.ones(2, requires_grad=True) for _ in range(64)]
    with traces.record() as trace:
        torch.stack(parts).sum().backward()
    for width in (80, 200):
        rows = [line for line in shown(trace, width, views=("ops",)).splitlines() if line.startswith("│ forward") and "aten::stack" in line]
        assert len(rows) == 1 and len(rows[0]) <= width
    assert "float32[2], float32[2], float32[2], float32[2], … +60 more -> float32[64, 2]" in rows[0]


def test_the_tracers_own_calls_into_torch_are_not_in_the_source_view(resnet):
    trace = resnet[0]
    if trace.source_skipped:
        pytest.skip(trace.source_skipped)
    calls = {entry.function: entry.calls for entry in trace.source}
    # torch's own check, once per module call; the module hooks' checks are not counted
    assert calls["is_compiling"] == calls["Module._call_impl"] == 76


def test_a_small_models_node_by_node_picture_fits_the_window_too():
    if not dot_available():
        pytest.skip("Graphviz's dot is not installed")
    # The quickstart's network, as training_step traces it: 16 nodes, drawn one by one.
    stack = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)
    )
    with traces.record() as trace:
        loss = torch.nn.functional.cross_entropy(stack(torch.randn(64, 784)), torch.randint(0, 10, (64,)))
        loss.backward()
    assert len(trace.graph.nodes) == 16
    svg = to_svg(trace)
    width = float(re.search(r'<svg width="([\d.]+)pt"', svg).group(1))
    assert width * 4 / 3 <= 1600
    assert ">weight: float32[512, 784]<" in svg  # a parameter named inside its module's box
