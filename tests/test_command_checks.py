"""Every benchmark command answers a bad value in one line, status 2, before torch even loads.

Each runs with a ``torch`` on PYTHONPATH that fails when imported: the expected
one-line error proves the check came first (seconds before any work).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from faults import DISK_FULL, fail_mid_file

BAD_VALUES = [
    ("below_python", ["--runs", "0"], "argument --runs: 0 is too small; it must be 1 or more"),
    ("below_python", ["--runs", "many"], "argument --runs: 'many' is not a whole number"),
    ("below_python", ["--runs", "1001"], "argument --runs: 1001 is too large; it must be at most 1000"),
    ("below_python", ["--output", ""], "argument --output: the path is empty; give a file name"),
    ("below_python", ["--output", "benchmarks"], "argument --output: 'benchmarks' is a folder, not a file"),
    ("below_python", ["--output", "no/such/folder.json"], "argument --output: the folder 'no/such' does not exist"),
    ("debug_startup", ["--runs", "0"], "argument --runs: 0 is too small; it must be 1 or more"),
    ("debug_startup", ["--runs", "-1"], "argument --runs: -1 is too small; it must be 1 or more"),
    ("debugger_requests", ["--repeat", "0"], "argument --repeat: 0 is too small; it must be 1 or more"),
    ("debugger_requests", ["--repeat", "2.5"], "argument --repeat: '2.5' is not a whole number"),
    ("debugger_variables", ["--repeat", "0"], "argument --repeat: 0 is too small; it must be 1 or more"),
    ("debugger_variables", ["--repeat", "10001"], "argument --repeat: 10001 is too large; it must be at most 10000"),
    ("page_speed", ["--loads", "0"], "argument --loads: 0 is too small; it must be 1 or more"),
    ("page_speed", ["--screenshot", ""], "argument --screenshot: the path is empty; give a file name"),
    ("page_speed", ["--screenshot", "no/such/page.png"], "argument --screenshot: the folder 'no/such' does not exist"),
    ("trace_overhead", ["--runs", "0"], "argument --runs: 0 is too small; it must be 1 or more"),
    ("trace_overhead", ["--batch", "0"], "argument --batch: 0 is too small; it must be 1 or more"),
    ("trace_overhead", ["--size", "8"], "argument --size: 8 is too small; it must be 32 or more"),
    ("trace_overhead", ["--size", "100000"], "argument --size: 100000 is too large; it must be at most 1024"),
    ("trace_overhead", ["--output", ""], "argument --output: the path is empty; give a file name"),
    ("trace_overhead", ["--output", "benchmarks"], "argument --output: 'benchmarks' is a folder, not a file"),
    ("trace_overhead", ["--no-such-option"], "unrecognized arguments: --no-such-option"),
]


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    """A folder with a ``torch`` that refuses to load, to put first on PYTHONPATH."""
    folder = tmp_path_factory.mktemp("no_torch")
    (folder / "torch").mkdir()
    (folder / "torch" / "__init__.py").write_text("raise ImportError('torch was imported before the options were checked')\n")
    return folder


@pytest.mark.parametrize(("name", "argv", "message"), BAD_VALUES)
def test_a_bad_value_is_one_line_and_status_2_before_torch_loads(name, argv, message, no_torch):
    env = {**os.environ, "PYTHONPATH": str(no_torch)}
    result = subprocess.run(
        [sys.executable, f"benchmarks/{name}.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"benchmarks/{name}.py: error: {message} (see --help)\n"


def test_trace_overhead_saves_its_figures_whole_or_not_at_all(tmp_path, monkeypatch, capsys):
    """A full disk halfway through --output leaves the earlier figures as they were, and no temporary file."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when it runs as a script
    spec = importlib.util.spec_from_file_location("trace_overhead", ROOT / "benchmarks" / "trace_overhead.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    monkeypatch.setattr(benchmark, "in_process", lambda runs, batch, size, warm_up: {key: 1.0 for key in IN_PROCESS_KEYS})
    monkeypatch.setattr(benchmark, "readability", lambda name, size: {key: 1 for key in READABILITY_KEYS})
    output = tmp_path / "figures.json"
    output.write_text('{"earlier": true}\n')
    fail_mid_file(monkeypatch, room=10, error=DISK_FULL)
    with pytest.raises(OSError, match=f"could not write {output}: No space left on device"):
        benchmark.main(["--quick", "--output", str(output)])
    assert json.loads(output.read_text()) == {"earlier": True}
    assert os.listdir(tmp_path) == ["figures.json"]


IN_PROCESS_KEYS = ("plain_s", "traced_s", "ratio", "mode_only_s", "mode_only_ratio")
READABILITY_KEYS = ("nodes", "lines_80", "lines_120", "too_wide_80", "too_wide_120", "render_80_s", "render_120_s", "json_kib")


# --- traces/render/compare.py reads a saved trace as untrusted input -------------------------

from traces.render.compare import InvalidTrace, check_trace, differences, op_runs, stable_view  # noqa: E402

TRACE = {"schema_version": 6, "scenario": "t", "graph": None, "backward": [], "facts": {}, "ops": []}


def with_ops(*ops):
    return {**TRACE, "ops": [{"phase": "forward", "op": "aten::mul.Tensor", **op} for op in ops]}


def test_a_count_of_a_billion_is_kept_as_a_number_not_counted_out():
    trace = with_ops({"count": 10**9})
    assert stable_view(trace)["ops.forward"] == [("aten::mul.Tensor", 10**9)]
    # entries folded apart (other shapes) compare equal to one entry of the same calls
    assert op_runs(with_ops({"count": 2}, {"count": 3}), "forward") == op_runs(with_ops({"count": 5}), "forward")
    assert differences(stable_view(with_ops({"count": 2})), stable_view(with_ops({"count": 3}))) == [
        "ops.forward[0][1]: recorded 2, now 3"
    ]


@pytest.mark.parametrize(
    ("trace", "message"),
    [
        ([], "a trace is a JSON object, not list"),
        ({"schema_version": 6}, "not a trace: no scenario, graph, backward, ops, facts"),
        ({**TRACE, "schema_version": "6"}, "schema_version must be a whole number, not '6'"),
        ({**TRACE, "graph": {"nodes": []}}, "graph must be null or hold the lists outputs, nodes and edges"),
        ({**TRACE, "ops": {"a": 1}}, "ops must be a list of objects"),
        ({**TRACE, "backward": [1]}, "backward must be a list of objects"),
        ({**TRACE, "facts": []}, "facts must be an object"),
        (with_ops({"count": 0}), "ops[0].count must be a whole number of at least 1, not 0"),
        (with_ops({"count": -5}), "ops[0].count must be a whole number of at least 1, not -5"),
        (with_ops({"count": 1.5}), "ops[0].count must be a whole number of at least 1, not 1.5"),
        (with_ops({"count": True}), "ops[0].count must be a whole number of at least 1, not True"),
        (with_ops({"phase": "sideways"}), "ops[0] needs an op name and a phase (forward or backward)"),
        (with_ops({"op": None}), "ops[0] needs an op name and a phase (forward or backward)"),
    ],
)
def test_a_file_that_is_not_a_trace_is_one_line(trace, message):
    with pytest.raises(InvalidTrace) as raised:
        stable_view(trace)
    assert str(raised.value) == message
    check_trace(TRACE)  # the smallest whole trace passes
