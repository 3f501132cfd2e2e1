"""What a saved trace holds: strict JSON (NaN as a string), and no path of the machine that made it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys

import pytest
import torch

import traces
from traces.render.compare import differences, number, stable_view
from traces.render.files import save_trace
from traces.render.picture import dot_available

MODEL_CODE = '''
import torch
from torch import nn

import traces


def run(name):
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    with traces.record(name=name) as trace:
        loss = layer(torch.ones(1, 3)).sum()
        loss.backward()
    return trace
'''


def refuse(constant: str):
    raise ValueError(f"not strict JSON: {constant}")


def test_a_nan_gradient_is_saved_as_strict_json_and_read_back(tmp_path):
    with traces.record(name="nan") as trace:
        w = torch.tensor([0.0, 1.0], requires_grad=True)
        (w / w).sum().backward()
    trace.facts.update(largest=float("inf"), smallest=-float("inf"))
    save_trace(trace, tmp_path)
    text = (tmp_path / "nan.json").read_text()
    data = json.loads(text, parse_constant=refuse)  # no bare NaN or Infinity anywhere
    values = [value for step in data["backward"] for summary in step["arriving"] or [] for value in [summary["values"]]]
    assert ["NaN", 0.0] in values  # the gradient of w / w at 0
    assert (data["facts"]["largest"], data["facts"]["smallest"]) == ("Infinity", "-Infinity")
    assert number("NaN") != number("NaN") and number("-Infinity") == -float("inf") and number("nan") == "nan"
    assert differences(stable_view(data), stable_view(json.loads(text))) == []  # NaN equals NaN when compared
    assert differences({"g": "NaN"}, {"g": 1.0}) == ["g: recorded nan, now 1.0"]


def absolute_paths(text: str) -> list[str]:
    """Every absolute path of this machine the text names: its folders, and any /word/word... at a word start."""
    machine = {os.path.expanduser("~"), sys.prefix, os.path.dirname(torch.__file__), os.getcwd()}
    named = [folder for folder in machine if len(folder) > 1 and folder in text]
    return named + re.findall(r"(?<![\w.~/<])/(?:tmp|home|root|usr|opt|work|private|Users)/[\w.-]+", text)


@pytest.mark.skipif(not dot_available(), reason="the SVG needs Graphviz's dot")
def test_no_saved_file_names_a_path_of_this_machine(tmp_path, monkeypatch):
    """The model's code lives outside the current folder (and outside home): the JSON, the
    Mermaid, the page and the SVG's tooltips name it by file name alone."""
    code = tmp_path / "elsewhere" / "model_far_away.py"
    code.parent.mkdir()
    code.write_text(MODEL_CODE)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setenv("HOME", str(here / "home"))
    spec = importlib.util.spec_from_file_location("model_far_away", code)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trace = module.run("far")
    trace.facts["data"] = f"Data: FashionMNIST from {tmp_path}/data/FashionMNIST/raw (unpacked now)"
    trace.facts["model_path"] = str(tmp_path / "model.pth")
    written, _ = save_trace(trace, here / "out")
    assert sorted(path.suffix for path in written) == [".html", ".json", ".mmd", ".svg"]
    svg = (here / "out" / "far.svg").read_text()
    assert "model_far_away.py:12" in svg  # the tooltip still says where
    for path in written:
        text = path.read_text()
        assert str(tmp_path) not in text and absolute_paths(text) == [], path.name
    data = json.loads((here / "out" / "far.json").read_text())
    assert data["facts"]["data"] == "Data: FashionMNIST from raw (unpacked now)"
    assert data["facts"]["model_path"] == "model.pth"
