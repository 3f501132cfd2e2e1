"""benchmarks/trace_overhead.py keeps working: pytest runs it once in its quick mode.

It measures nothing here (timings belong in its own output, not in tests); this
only checks that it runs and writes every figure it promises.
"""

import json

from conftest import run_script


def test_the_overhead_benchmark_runs_in_quick_mode_and_writes_its_figures(tmp_path):
    output = tmp_path / "overhead.json"
    result = run_script("benchmarks/trace_overhead.py", "--quick", "--batch", "2", "--output", str(output), timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(output.read_text())
    assert set(figures["in_process"]["2x64"]) == {"plain_s", "mode_only_s", "traced_s", "ratio", "mode_only_ratio"}
    assert figures["in_process"]["2x64"]["traced_s"] > 0
    resnet = figures["trace"]["resnet18"]
    assert resnet["nodes"] == 133 and resnet["lines_80"] > 0 and resnet["too_wide_120"] == 0
    assert "In process: resnet18 forward + backward, batch 2 of 64x64" in result.stdout
