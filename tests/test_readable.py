"""Every view at 80 columns: no number broken across lines, no link broken, no line wider than the
terminal but a link; --focus on a part of the graph; where backward spent its time (issue 24)."""

import io
import re
import textwrap
import time

import pytest
import torch
from rich.console import Console
from test_trace_at_size import PATH_LINE, resnet, shown  # noqa: F401 - resnet: the shared fixture
from torch import nn

import traces
from traces.__main__ import main
from traces.render.grouping import display_groups
from traces.render.json_file import trace_to_dict
from traces.recorders.source import SourceEntry
from traces.render.terminal import render_source
from traces.data.trace import Trace

pytestmark = pytest.mark.xdist_group("model_traces")  # resnet18's trace, shared with tests/test_trace_at_size.py

# A number as the views print it (not a node number "#3", which only the list layout has).
NUMBER = re.compile(r"(?<![#\w.])-?\d+(?:\.\d+)?(?:e[-+]\d+)?(?![\w.])")
LINK = re.compile(r"\S+\.(?:py|h|yaml|cpp):\d+")


def assert_readable_at_80(trace, **options) -> str:
    """The views at 80 columns against the same views at 400, where nothing wraps: every number
    and every link at 80 is one printed at 400 (a number split over two lines would be two
    numbers that are not), and no line is wider than 80 unless it is a link alone."""
    narrow, wide = shown(trace, 80, **options), shown(trace, 400, **options)
    broken = set(NUMBER.findall(narrow)) - set(NUMBER.findall(wide))
    assert not broken, f"numbers broken across lines at 80 columns: {sorted(broken)[:10]}"
    assert set(LINK.findall(wide)) <= set(LINK.findall(narrow)), "a path:line broken at 80 columns"
    too_wide = [line for line in narrow.splitlines() if len(line) > 80 and not PATH_LINE.match(line)]
    assert not too_wide, too_wide[:3]
    assert narrow.count("…") == wide.count("…"), "a cell cut short to fit 80 columns"
    return narrow


@pytest.mark.parametrize("depth", [None, 1, 5])
def test_resnet18_at_80_columns(resnet, depth):  # noqa: F811
    assert_readable_at_80(resnet[0], views=("graph", "backward", "source"), depth=depth)


def test_the_backward_table_never_breaks_a_gradient_at_depth_5(resnet):  # noqa: F811
    trace, model, _ = resnet
    text = assert_readable_at_80(trace, views=("backward",), depth=5)
    conv1 = model.layer1[0].conv1.weight.grad.norm().item()
    assert re.search(rf"layer1\.0\.conv1 \(Conv2d\) +norm {conv1:.4g}\n", text)
    assert "float32[1, 1000] norm=31.62" in text  # the gradient arriving, whole, under fc's name


class Detector(nn.Module):
    """Long module names, nested deep, and gradients as small as 1e-7: the backward table's
    gradient column was left 5 characters at 80 columns (``2.543e-`` / ``07``)."""

    def __init__(self):
        super().__init__()
        self.feature_pyramid_network_of_the_backbone = nn.Sequential(nn.Sequential(nn.Sequential(nn.Linear(8, 8))))
        self.region_proposal_network_head = nn.Sequential(nn.Sequential(nn.Linear(8, 1)))

    def forward(self, x):
        return self.region_proposal_network_head(self.feature_pyramid_network_of_the_backbone(x))


@pytest.mark.parametrize("depth", [2, 5])
def test_long_module_names_and_tiny_gradients_at_80_columns(depth):
    torch.manual_seed(0)
    model = Detector()
    with traces.record() as trace:
        (model(torch.randn(3, 8) * 1e-7) * 1e-7).sum().backward()
    text = assert_readable_at_80(trace, views=("graph", "backward"), depth=depth)
    weight = model.region_proposal_network_head[0][0].weight.grad.norm().item()
    assert f"weight {weight:.4g}" in text and "e-" in f"{weight:.4g}"  # named, with its norm, whole


def test_nine_linear_layers_node_by_node_at_80_columns():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(9)])
    with traces.record() as trace:
        model(torch.randn(2, 4)).pow(2).sum().backward()
    text = assert_readable_at_80(trace, views=("graph", "backward"))
    assert len(text.splitlines()) < 800  # 1,980 lines before
    assert "\n#1 output = SumBackward0" in text and "\n#2 PowBackward0" in text
    # Each formula written whole, once per node class, under its node.
    assert text.count("grad_mat1 = mm_mat1_backward(grad, mat2, mat1.sym_sizes(),") == 1
    assert "formula: as #3" in text
    assert re.search(r"^step 0: output \(SumBackward0\)", text, re.M)


def test_the_ops_table_keeps_zero_grads_long_op_name_within_80_columns():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with traces.record() as trace:
        optimizer.zero_grad()
        model(torch.ones(4, 3)).sum().backward()
    text = shown(trace, 80, views=("ops",))
    assert "│          │ profiler::_record_function_exit._RecordFunction " in text  # whole
    too_wide = [line for line in text.splitlines() if len(line) > 80 and not PATH_LINE.match(line)]
    assert not too_wide, too_wide[:3]
    assert "│          │   float32[2, 3] -> float32[3, 2]" in text  # the shapes, under the op name


def test_deep_source_calls_show_their_depth_within_80_columns():
    trace = Trace("deep", "2.0", "cpu", source=[SourceEntry("Module._call_impl", "/t/torch/nn/modules/module.py", 1787, 45, 3)])
    console = Console(file=io.StringIO(), width=80, color_system=None)
    render_source(trace, console)
    lines = console.file.getvalue().splitlines()
    assert lines[-2].endswith("45> Module._call_impl x3") and len(lines[-2]) <= 80
    assert lines[-1].strip() == "/t/torch/nn/modules/module.py:1787"


def test_the_source_view_lists_forward_and_backward_and_folds_building_the_model(resnet):  # noqa: F811
    trace = resnet[0]
    if trace.source_skipped:
        pytest.skip(trace.source_skipped)
    text = shown(trace, 80, views=("source",))
    listed = text.split("… and")[0]
    assert "Conv2d.forward x20" in listed and "Tensor.backward x1" in listed
    assert "Conv2d.__init__" not in listed and "kaiming_uniform_" not in listed
    building = [entry for entry in trace.source if entry.building]
    assert {"Conv2d.__init__", "kaiming_uniform_"} <= {entry.function for entry in building}
    calls = sum(entry.calls for entry in building)
    assert f"… and {len(building)} functions ({calls} calls) entered only while building the model" in text
    assert len(text.splitlines()) < 90  # 164 lines before
    assert trace_to_dict(trace)["source"][0].keys() >= {"building"}


# --focus


def test_focus_on_a_resnet_parameter_shows_its_gradient_and_where_it_came_from(resnet):  # noqa: F811
    trace, model, _ = resnet
    text = assert_readable_at_80(trace, views=("graph", "backward"), focus="layer1.0.conv1.weight")
    weight = model.layer1[0].conv1.weight.grad
    assert text.startswith("Focus: parameter layer1.0.conv1.weight, 2 nodes\n")
    assert f"    layer1.0.conv1.weight: float32[64, 64, 3, 3] norm={weight.norm().item():.4g}\n" in text
    path = text.split("path from the output")[1].split("node by node")[0].splitlines()
    words = " ".join(path).split()
    loss = words.index("(SumBackward0)")
    assert words[loss - 1 : loss + 3] == ["loss", "(SumBackward0)", "fc:", "AddmmBackward0"]  # from the loss down
    assert path[-2].strip() == "layer1.0.conv1: ConvolutionBackward0"  # the node that computed the gradient
    assert re.search(r"step \d+: ConvolutionBackward0 in layer1\.0\.conv1", text)
    flowing = " ".join(text.split())  # the words, wherever the lines wrap
    assert "grad_layer1.0.conv1.weight = (the formula of grad_input) = float32[64, 64, 3, 3]" in flowing
    assert "layer1.0.conv1.weight.grad += float32[64, 64, 3, 3]" in flowing
    assert "Autograd graph of loss" not in text  # the focus replaces the graph and backward views


def test_focus_on_a_module_shows_its_nodes_and_parameters(resnet):  # noqa: F811
    trace, model, _ = resnet
    text = shown(trace, 80, views=("graph",), focus="layer4.1.bn2")
    assert text.startswith("Focus: module layer4.1.bn2 (BatchNorm2d), 3 nodes\n")
    bias = model.layer4[1].bn2.bias.grad.norm().item()
    assert f"layer4.1.bn2.bias: float32[512] norm={bias:.4g}" in text
    assert "NativeBatchNormBackward0 in layer4.1.bn2" in text


def test_the_grouped_view_names_each_modules_parameters_with_their_gradient_norms(resnet):  # noqa: F811
    trace, model, _ = resnet
    text = shown(trace, 80, views=("graph",))
    block = model.layer1[0]
    assert f"grad norms: conv1.weight {block.conv1.weight.grad.norm().item():.4g}, bn1.weight" in text
    assert "… +3 more (--focus layer2.0)" in " ".join(text.split())  # layer2.0 has nine: its downsample's too


def test_an_unknown_focus_is_one_line_with_the_closest_names(resnet):  # noqa: F811
    from traces.render.focus import UnknownFocus

    with pytest.raises(UnknownFocus, match=r"'layer1\.0\.conv1\.wieght' is not in the trace; did you mean layer1\.0\.conv1\.weight"):
        shown(resnet[0], 80, focus="layer1.0.conv1.wieght")


SMALL = """
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    model(torch.ones(2, 3)).sum().backward()
    print("ran")
"""


def test_focus_from_the_command_line(tmp_path, capsys):
    script = tmp_path / "small.py"
    script.write_text(textwrap.dedent(SMALL))
    assert main(["--focus", "0.weight", "--views", "graph", str(script)]) == 0
    out = capsys.readouterr().out
    assert "Focus: parameter 0.weight, 2 nodes" in out and "0.weight.grad += " in out


def test_an_unknown_focus_exits_2_after_the_script_and_still_saves(tmp_path, capsys):
    script = tmp_path / "small.py"
    script.write_text(textwrap.dedent(SMALL))
    saved = tmp_path / "out"
    assert main(["--focus", "0.wieght", "--save-trace", str(saved), str(script)]) == 2
    out, err = capsys.readouterr()
    assert err == "python -m traces: error: --focus '0.wieght' is not in the trace; did you mean 0.weight, 2.weight?\n"
    assert out.startswith("ran\n") and "Autograd graph" not in out  # no views printed
    assert (saved / "small.json").exists()


# Backward time


def test_each_backward_step_has_its_time_in_the_json_and_the_slowest_are_shown():
    from traces.render.terminal import duration_text

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    x = torch.randn(32, 64)
    began = time.perf_counter_ns()
    with traces.record() as trace:
        model(x).sum().backward()
    took = time.perf_counter_ns() - began
    traced = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(traced, model.parameters()))  # tracing changed nothing
    data = trace_to_dict(trace)
    assert data["schema_version"] == 6
    times = [step["time_ns"] for step in data["backward"]]
    assert len(times) == len(trace.graph.nodes) and all(isinstance(t, int) and t > 0 for t in times)
    assert sum(times) < took  # each node's own time, within the traced block's
    text = shown(trace, 80, views=("backward",))
    slowest = max(trace.backward, key=lambda step: step.time_ns)
    node = trace.graph.node(slowest.node)
    total = sum(times)
    header = f"Backward time, slowest first (each node's wall time between its hooks; {len(times)} nodes, {duration_text(total)} in all)"
    assert header in " ".join(text.split())
    first = text.split("  by node:\n")[1].splitlines()[0]
    where = f" in {node.module}" if node.module else ""
    expected = f"{duration_text(slowest.time_ns)} {100 * slowest.time_ns / total:3.0f}%  {node.label}{where}"
    assert first.startswith(" " * 4 + expected.rjust(len(expected) + 9 - len(duration_text(slowest.time_ns))))


def test_the_slowest_modules_are_summed_over_their_nodes(resnet):  # noqa: F811
    from traces.render.terminal import duration_text

    trace = resnet[0]
    text = shown(trace, 80, views=("backward",))
    section = text.split("  by module, 2 levels deep:\n")[1].split("  by node:")[0].splitlines()
    group_of = display_groups(trace.graph, 2)
    spent: dict[str, int] = {}
    for step in trace.backward:
        spent[group_of[step.node]] = spent.get(group_of[step.node], 0) + step.time_ns
    ranked = sorted(spent, key=lambda group: -spent[group])[:5]
    assert [line.split("%  ")[1].split(" (")[0] for line in section] == ranked
    assert section[0].split()[:2] == duration_text(spent[ranked[0]]).split()
