"""benchmarks/trace_overhead.py keeps working: pytest runs it once in its quick mode.

It measures nothing here (timings belong in its own output, not in tests); this
only checks that it runs and writes every figure it promises. Its main runs in
this process, on the session's trace of resnet18 (tests/conftest.py: the same
recipe as its own traced_model, made once for several tests); its options are
checked from the shell in tests/test_command_checks.py.
"""

import importlib.util
import json

import pytest

from conftest import ROOT

pytestmark = pytest.mark.xdist_group("model_traces")  # resnet18's trace, shared with tests/test_trace_at_size.py


def test_the_overhead_benchmark_runs_in_quick_mode_and_writes_its_figures(tmp_path, monkeypatch, capsys, model_traces):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when it runs as a script
    spec = importlib.util.spec_from_file_location("trace_overhead", ROOT / "benchmarks" / "trace_overhead.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    traced = []

    def shared_trace(name, size):
        traced.append((name, size))
        return model_traces(name).trace

    monkeypatch.setattr(benchmark, "traced_model", shared_trace)
    output = tmp_path / "overhead.json"
    assert benchmark.main(["--quick", "--batch", "2", "--output", str(output)]) == 0
    assert traced == [("resnet18", 64)]  # the recipe of the shared trace: one 64x64 image
    figures = json.loads(output.read_text())
    assert set(figures["in_process"]["2x64"]) == {"plain_s", "mode_only_s", "traced_s", "ratio", "mode_only_ratio"}
    assert figures["in_process"]["2x64"]["traced_s"] > 0
    resnet = figures["trace"]["resnet18"]
    assert resnet["nodes"] == 133 and resnet["lines_80"] > 0 and resnet["too_wide_120"] == 0
    assert "In process: resnet18 forward + backward, batch 2 of 64x64" in capsys.readouterr().out
