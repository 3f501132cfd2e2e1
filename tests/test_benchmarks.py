"""The benchmark script keeps working: pytest runs it once in its quick mode.

It measures nothing here (timings belong in its own output, not in tests); this
only checks that it runs and writes every figure it promises.
"""

import json

from conftest import run_script


def test_the_benchmark_runs_in_quick_mode_and_writes_its_figures(tmp_path):
    output = tmp_path / "results.json"
    result = run_script("benchmarks/run.py", "--quick", "--output", str(output), timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(output.read_text())
    assert figures["machine"]["cores"] >= 1 and figures["machine"]["torch"]
    assert set(figures["floor_s"]) == {"import torch"}
    assert set(figures["scenarios"]["backward"]) == {"plain_s", "trace_s"}
    assert figures["imports"]["backward"]["biggest"] != "site"  # Python's own start-up is not counted
    assert figures["debugger"]["adapter_to_stop_in_torch_s"] > 0
    assert figures["debugger"]["stackTrace_ms"] > 0
    assert figures["quickstart_training"]["samples"] == 256
    assert set(figures["against_targets"]) == {"scenario / import torch", "scenario --trace / scenario"}
    assert "target scenario / import torch <= 1.3" in result.stdout
