"""The trace as a page (traces/render/page.py, traces/render/page.js): self-contained, read in a real
headless Chromium (tests/chromium.py), one browser for the whole module."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from chromium import Chromium, chromium_path
from conftest import ROOT, recorded_traces, scenario_module

import traces
from scenarios._record import RECORDED
from traces.render.grouping import display_groups
from traces.render.json_file import trace_to_dict
from traces.render.page import page_data, relative_link, to_html

DATA = re.compile(r'<script type="application/json" id="trace-data">(.*?)</script>', re.S)
needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed")
# The models' traces are made once per session (tests/conftest.py), shared with
# tests/test_trace_at_size.py: one worker runs all of them.
pytestmark = pytest.mark.xdist_group("model_traces")


def embedded(page: str) -> dict:
    return json.loads(DATA.search(page).group(1))


# --- the file -----------------------------------------------------------------------------


def test_the_page_holds_the_trace_and_loads_nothing(tmp_path):
    with traces.record(name="note") as trace:
        w = torch.tensor(1.0, requires_grad=True)
        (w * 3).backward()
    trace.facts["message"] = "</script><script>alert(1)</script><!--"
    page = to_html(trace, tmp_path)
    assert page.count("</script>") == 2  # the data's and the script's own: the fact cannot end either
    assert re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", page) is None
    data = embedded(page)
    assert data["facts"]["message"] == "</script><script>alert(1)</script><!--"
    [node] = [node for node in data["graph"]["nodes"] if node["name"] == "MulBackward0"]
    assert data["page"]["derivatives"][node["derivative"]]["op"] == "mul.Tensor"
    for each in data["graph"]["nodes"]:  # each distinct derivative is written once
        each["derivative"] = data["page"]["derivatives"][each["derivative"]]
    assert {key: value for key, value in data.items() if key != "page"} == json.loads(json.dumps(trace_to_dict(trace)))
    assert data["page"]["equations"][node["id"]] == [  # as the terminal's backward table writes them
        "grad_w = grad * other = 1 * 3 = 3",
        "grad_other: none (this input needs no gradient)",
    ]


def test_a_nan_gradient_is_written_as_the_json_file_writes_it(tmp_path):
    with traces.record(name="nan") as trace:
        w = torch.tensor(0.0, requires_grad=True)
        (w / w).backward()
    data = embedded(to_html(trace, tmp_path))
    assert {step["arriving"][0]["values"] for step in data["backward"]} >= {"NaN"}  # strict JSON, as JavaScript writes it


def test_a_code_link_is_relative_to_the_page_and_only_upwards(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text("")
    assert relative_link("model.py", tmp_path) == "model.py"
    assert relative_link("model.py", tmp_path / "out" / "pages") == "../../model.py"
    assert relative_link("scenarios/backward.py", RECORDED) == "../../scenarios/backward.py"
    assert relative_link("model.py", Path("/")) is None  # the page above the run's folder: no link
    assert relative_link("missing.py", tmp_path) is None
    assert relative_link("/etc/hostname", Path("/")) is None


@pytest.mark.parametrize("name", recorded_traces())
def test_every_recorded_trace_has_its_page_with_no_path_of_the_machine(name):
    page = (RECORDED / f"{name}.html").read_text()
    data = embedded(page)
    recorded = json.loads((RECORDED / f"{name}.json").read_text())
    assert (data["scenario"], data["graph"]["outputs"]) == (recorded["scenario"], recorded["graph"]["outputs"])
    assert len(data["backward"]) == len(recorded["backward"])
    for machine_path in (str(ROOT), os.path.expanduser("~") + os.sep, sys.prefix):
        assert machine_path not in page
    assert all(link.startswith("../../") for link in data["page"]["links"].values())


# --- in the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.skip("Chromium is not installed")
    with Chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def backward_page(browser, tmp_path_factory):
    """The page that `python scenarios/backward.py --save-trace DIR` writes, open in the browser."""
    folder = tmp_path_factory.mktemp("backward")
    assert scenario_module("backward").main(["--save-trace", str(folder)]) == 0
    return browser.open((folder / "backward.html").as_uri())


@pytest.fixture(scope="module")
def resnet_page(browser, tmp_path_factory, model_traces):
    """A torchvision resnet18 (random weights, a 64x64 input), saved by trace.save(); its trace
    is the session's (tests/conftest.py), made once for this module and tests/test_trace_at_size.py."""
    folder = tmp_path_factory.mktemp("resnet")
    trace = model_traces("resnet18").trace
    assert folder / "resnet18.html" in trace.save(folder)
    page = browser.open((folder / "resnet18.html").as_uri())
    page.trace = trace
    return page


def shown(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#graph .box')].map(box => box.dataset.unit)")


def click(page, selector: str) -> None:
    page.evaluate(f"document.querySelector({json.dumps(selector)}).dispatchEvent(new MouseEvent('click', {{bubbles: true}}))")


def search(page, text: str) -> list[str]:
    """Type ``text`` into the search box; the results listed."""
    page.evaluate(f"(() => {{ const box = document.getElementById('search'); box.value = {json.dumps(text)}; box.dispatchEvent(new Event('input')); }})()")
    return page.evaluate("[...document.querySelectorAll('#results li')].map(li => li.textContent)")


def leaf_grads(page) -> dict[str, str]:
    return page.evaluate("Object.fromEntries([...document.querySelectorAll('#graph .box.leaf')].map(box => [box.dataset.node, box.querySelector('.grad').textContent]))")


@needs_chromium
def test_a_small_graph_is_shown_node_by_node(backward_page):
    assert backward_page.evaluate("document.body.dataset.ready") == "yes"
    assert shown(backward_page) == ["n0", "n1", "n2", "n3", "n4"]
    texts = backward_page.evaluate("[...document.querySelectorAll('#graph .box')].map(box => box.textContent)")
    assert [text for text in texts if "MulBackward0" in text] == ["click: the node's panely = MulBackward0backward.py:54"]


@needs_chromium
def test_the_panel_of_mul_backward_has_both_formulas_with_this_runs_numbers(backward_page):
    click(backward_page, '#graph [data-node="n0"]')
    panel = backward_page.evaluate("document.getElementById('panel').innerText")
    assert backward_page.evaluate("document.getElementById('panel-title').textContent") == "y = MulBackward0"
    assert "MulBackward0 · node n0 · the 3rd node autograd made" in panel
    equations = backward_page.evaluate("[...document.querySelectorAll('#panel .equation')].map(e => e.textContent)")
    assert equations == ["grad_a = grad * b = 1 * 2 = 2", "grad_b = grad * a = 1 * 3 = 3"]
    formulas = backward_page.evaluate("[...document.querySelectorAll('#panel .formula')].map(e => e.textContent)")
    assert formulas == [
        "grad_self = mul_tensor_backward(grad, other, self.scalar_type())\n  for real tensors: grad * other",
        "grad_other = mul_tensor_backward(grad, self, other.scalar_type())\n  for real tensors: grad * self",
    ]
    saved = backward_page.evaluate("[...document.querySelectorAll('#panel tr.saved')].map(e => e.innerText)")
    assert saved == ["other\tfloat32[] = 2\tversion 0\tfreed by backward", "self\tfloat32[] = 3\tversion 0\tfreed by backward"]
    assert "out 0\t2 to a = AddBackward0" in panel and "out 1\t3 to b = AddBackward0" in panel
    assert "dispatch keys: AutogradCPU → ADInplaceOrView (falls through) → CPU" in panel
    # Saved outside the folder of the run, the page names the line without a link.
    assert backward_page.evaluate("document.querySelector('#panel .code').outerHTML") == '<code class="code">scenarios/backward.py:54</code>'


@needs_chromium
def test_the_recorded_page_links_the_line_that_made_a_node_to_vscode(browser):
    """Opened from the disk, the page works out where the file is from where the page is."""
    page = browser.open((RECORDED / "backward.html").as_uri())
    click(page, '#graph [data-node="n0"]')
    assert page.evaluate("document.querySelector('#panel a.code').href") == f"vscode://file{ROOT / 'scenarios' / 'backward.py'}:54"
    assert page.errors() == []


@needs_chromium
def test_the_timeline_steps_through_backward_and_back_to_exactly_the_earlier_state(backward_page):
    backward_page.press("Home")
    seen = [leaf_grads(backward_page)]
    for _ in range(5):
        backward_page.press("ArrowRight")
        seen.append(leaf_grads(backward_page))
    assert [state["n3"] for state in seen] == [
        "w.grad: nothing yet",
        "w.grad: nothing yet",
        "w.grad: 3 so far (1 of 2 in)",  # b's AddBackward0 ran first
        "w.grad: 5 so far (2 of 2 in)",
        "w.grad = 5",  # AccumulateGrad put the sum into .grad
        "w.grad = 5",
    ]
    assert seen[-1] == {"n3": "w.grad = 5", "n4": "x.grad = 2"}
    click(backward_page, '#graph [data-node="n3"]')  # w's panel follows the timeline too
    assert backward_page.evaluate("document.getElementById('panel-now').textContent") == "At step 5 of 5: w.grad = 5 · ran at step 4"
    assert backward_page.evaluate("document.getElementById('step-text').textContent") == "step 5 of 5: x = 2 ran, grad in 2"
    backward_page.press("ArrowRight")  # past the end: stays
    assert backward_page.evaluate("document.body.dataset.step") == "5"
    backward_page.press("ArrowLeft")
    assert leaf_grads(backward_page) == seen[4] == {"n3": "w.grad = 5", "n4": "x.grad: 2 so far (1 of 1 in)"}
    backward_page.press("ArrowLeft")
    assert backward_page.evaluate("document.getElementById('panel-now').textContent") == "At step 3 of 5: w.grad: 5 so far (2 of 2 in) · runs at step 4"
    backward_page.press("ArrowRight")
    edges = backward_page.evaluate("[...document.querySelectorAll('#graph .edge')].map(e => e.getAttribute('class') + ' ' + e.textContent)")
    back_at_4 = sorted(edges)
    for _ in range(4):
        backward_page.press("ArrowLeft")
    assert leaf_grads(backward_page) == seen[0]
    assert backward_page.evaluate("document.querySelectorAll('#graph .edge.flowed, #graph .box.ran, #graph .box.current').length") == 0
    backward_page.evaluate("document.getElementById('slider').value = 4; document.getElementById('slider').dispatchEvent(new Event('input'))")
    again = backward_page.evaluate("[...document.querySelectorAll('#graph .edge')].map(e => e.getAttribute('class') + ' ' + e.textContent)")
    assert sorted(again) == back_at_4
    assert backward_page.evaluate("document.querySelector('#graph .box.current').dataset.node") == "n3"


@needs_chromium
def test_a_model_is_shown_by_module_and_a_module_opens_and_closes(resnet_page):
    graph = resnet_page.trace.graph
    at_depth_2 = shown(resnet_page)
    # As the terminal groups it at depth 2, with layer1.1 folded into layer1.0 (the same structure).
    assert len(at_depth_2) == len(set(display_groups(graph, 2).values())) - 1 == 15
    assert "fold:layer1.0" in at_depth_2 and "module:layer2.0" in at_depth_2
    click(resnet_page, '#graph [data-unit="module:layer2.0"]')
    opened = shown(resnet_page)
    inside = [info.name for info in graph.modules if info.parent == "layer2.0"]
    own = [node.id for node in graph.nodes if node.module == "layer2.0"]
    assert sorted(inside) == ["layer2.0.bn1", "layer2.0.bn2", "layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample", "layer2.0.relu"]
    assert len(opened) == len(at_depth_2) - 1 + len(inside) + len(own) == 21
    assert resnet_page.evaluate("document.getElementById('panel-title').textContent") == "layer2.0 (BasicBlock)"
    click(resnet_page, '#graph [data-cluster="module:layer2.0"] rect')  # its frame closes it
    assert shown(resnet_page) == at_depth_2
    click(resnet_page, '#graph [data-unit="fold:layer1.0"]')
    assert len(shown(resnet_page)) == 16 and "module:layer1.1" in shown(resnet_page)


@needs_chromium
def test_search_finds_a_parameter_and_opens_the_modules_around_it(resnet_page):
    results = search(resnet_page, "layer1.0.conv1.weight")
    assert results[0] == "layer1.0.conv1.weight: float32[64, 64, 3, 3] AccumulateGrad · layer1.0.conv1"
    click(resnet_page, "#results li")
    assert resnet_page.evaluate("document.getElementById('panel-title').textContent") == "layer1.0.conv1.weight: float32[64, 64, 3, 3]"
    [leaf] = [node.id for node in resnet_page.trace.graph.nodes if node.variable == "layer1.0.conv1.weight"]
    assert resnet_page.evaluate(f"document.querySelector('#graph [data-node=\"{leaf}\"]').getAttribute('class')") == "box leaf selected"
    assert search(resnet_page, "aten::addmm") == ["AddmmBackward0 AddmmBackward0 · fc · aten::addmm"]


@needs_chromium
def test_the_pages_make_no_network_request_and_no_console_error(backward_page, resnet_page):
    for page in (backward_page, resnet_page):
        assert page.errors() == []
        [url] = page.requests()
        assert url.startswith("file://") and url.endswith(".html")


@needs_chromium
def test_a_screenshot_of_the_page(browser, backward_page, tmp_path):
    backward_page.press("End")
    click(backward_page, '#graph [data-node="n0"]')
    backward_page.screenshot(tmp_path / "page.png")
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_m_traces_html_and_open(tmp_path):
    script = tmp_path / "note.py"
    script.write_text("import torch\nw = torch.ones(2, requires_grad=True)\n(w * 3).sum().backward()\n")
    opener = tmp_path / "opener.sh"
    opener.write_text(f'#!/bin/sh\necho "$1" > {tmp_path / "opened.txt"}\n')
    opener.chmod(0o755)
    env = {**os.environ, "BROWSER": f"{opener} %s"}
    result = subprocess.run(
        [sys.executable, "-m", "traces", "--open", "--views", "graph", "note.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Saved the page:\n  {tmp_path / 'note.html'}\n" in result.stdout  # the path alone on its line
    assert (tmp_path / "opened.txt").read_text().strip() == (tmp_path / "note.html").as_uri()
    assert embedded((tmp_path / "note.html").read_text())["page"]["links"] == {"note.py": "note.py"}


def test_python_m_traces_html_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    # Its main, in this process (the test above starts it from the shell).
    from traces.__main__ import main

    script = tmp_path / "note.py"
    script.write_text("import torch\nw = torch.ones(2, requires_grad=True)\n(w * 3).sum().backward()\n")
    (tmp_path / "note.html").mkdir()  # in the way
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["--html", "--views", "graph", "note.py"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"python -m traces: error: could not save the page: could not write {tmp_path / 'note.html'}: ")
    assert err.count("\n") == 1


@needs_chromium
def test_a_run_without_backward_has_a_page_that_says_so(browser, tmp_path):
    with traces.record(name="forward_only") as trace:
        torch.ones(2, requires_grad=True) * 2
    (tmp_path / "forward_only.html").write_text(to_html(trace, tmp_path))
    page = browser.open((tmp_path / "forward_only.html").as_uri())
    assert page.evaluate("document.getElementById('facts').textContent") == (
        f"torch {torch.__version__} · cpu · 0 nodes · 0 backward steps · this run recorded no backward pass"
    )
    assert shown(page) == [] and page.errors() == []


@needs_chromium
def test_the_page_benchmark_runs_in_quick_mode(tmp_path, monkeypatch, capsys, model_traces):
    """benchmarks/page_speed.py --quick, its main in this process, with the session's traces of
    the two models (the same recipe as its own model_trace, made once for several tests)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when it runs as a script
    spec = importlib.util.spec_from_file_location("page_speed", ROOT / "benchmarks" / "page_speed.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    monkeypatch.setattr(benchmark, "model_trace", lambda name: model_traces(name).trace)
    assert benchmark.main(["--quick", "--screenshot", str(tmp_path / "page.png")]) == 0
    figures = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert figures["densenet121 boxes at depth 2"] == 17 and figures["chain boxes then"] == 1002
    assert 0 < figures["resnet18 file (MB)"] < figures["densenet121 file (MB)"]
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
