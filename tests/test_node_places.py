"""Each autograd node knows the line of the user's code that made it (not torch's own files)."""

import inspect
import io
import json
import re

import pytest
import torch
from rich.console import Console
from torch import nn

import traces
from traces.render.picture import dot_available, to_svg
from traces.basics.paths import portable_path
from traces.basics.places import shown_path

THIS_FILE = __file__


def line_of(marker: str) -> int:
    """The line of this file that holds ``marker`` (in a comment), so the tests do not count lines."""
    source = inspect.getsource(inspect.getmodule(line_of)).splitlines()
    [number] = [index + 1 for index, text in enumerate(source) if marker in text and "line_of(" not in text]
    return number


def traced_layer():
    layer = nn.Linear(3, 2)
    x = torch.ones(4, 3)
    with traces.record() as trace:
        h = layer(x)  # MARK: h = layer(x)
        loss = h.relu().sum()  # MARK: loss
        loss.backward()
    return trace


@pytest.fixture(scope="module")
def trace():
    return traced_layer()


def node_named(trace, name):
    [node] = [node for node in trace.graph.nodes if node.name == name]
    return node


def test_a_layers_nodes_are_credited_to_the_line_that_called_it_not_to_torch(trace):
    for name in ("AddmmBackward0", "TBackward0"):  # made inside torch/nn/modules/linear.py
        node = node_named(trace, name)
        assert (node.path, node.line) == (THIS_FILE, line_of("MARK: h = layer(x)"))
    for name in ("ReluBackward0", "SumBackward0"):
        assert node_named(trace, name).line == line_of("MARK: loss")


def test_accumulate_grad_has_no_line(trace):
    assert {node.path for node in trace.graph.nodes if node.is_leaf} == {None}


def test_the_terminal_shows_path_colon_line(trace):
    console = Console(file=io.StringIO(), width=200, color_system=None)
    trace.show(console, views=("graph",))
    assert "AddmmBackward0 in Linear  saved: " in console.file.getvalue()
    assert f"{shown_path(THIS_FILE)}:{line_of('MARK: h = layer(x)')}" in console.file.getvalue()


def test_the_json_keeps_path_and_line_apart(trace, tmp_path):
    trace.save(tmp_path)
    nodes = json.loads((tmp_path / "trace.json").read_text())["graph"]["nodes"]
    addmm = next(node for node in nodes if node["name"] == "AddmmBackward0")
    # As every saved path: portable (this file relative to the repository).
    assert (addmm["path"], addmm["line"]) == ("tests/test_node_places.py", line_of("MARK: h = layer(x)"))


@pytest.mark.skipif(not dot_available(), reason="Graphviz's dot is not installed")
def test_the_picture_shows_the_line_when_hovering_a_node(trace):
    svg = to_svg(trace)
    assert re.search(rf'xlink:title="[^"]*{re.escape(portable_path(THIS_FILE))}:{line_of("MARK: loss")}"', svg)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(2, 2)

    def forward(self, x):
        y = self.inner(x)  # MARK: inside the block
        return y * 2  # MARK: the block's own node


def test_a_modules_own_code_is_the_users_code_and_modules_know_where_they_were_called():
    block = Block()
    with traces.record() as trace:
        out = block(torch.ones(1, 2))  # MARK: block called
        out.sum().backward()
    assert node_named(trace, "AddmmBackward0").line == line_of("MARK: inside the block")
    assert node_named(trace, "MulBackward0").line == line_of("MARK: the block's own node")
    called = {module.name: module.line for module in trace.graph.modules}
    assert called == {"Block": line_of("MARK: block called"), "inner": line_of("MARK: inside the block")}


def test_nodes_made_before_recording_have_no_line():
    w = torch.ones(2, requires_grad=True)
    before = w * 2
    with traces.record() as trace:
        after = before.exp()  # MARK: after
        after.sum().backward()
    assert node_named(trace, "MulBackward0").line is None
    assert node_named(trace, "ExpBackward0").line == line_of("MARK: after")


def test_made_is_the_order_autograd_made_the_nodes_in(trace):
    made = {node.name: node.made for node in trace.graph.nodes if not node.is_leaf}
    assert made == {"TBackward0": 0, "AddmmBackward0": 1, "ReluBackward0": 2, "SumBackward0": 3}
