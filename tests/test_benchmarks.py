"""The benchmark script keeps working: pytest runs it once in its quick mode.

It measures nothing here (timings belong in its own output, not in tests); this
only checks that it runs and writes every figure it promises. It runs in this
process (its ``main``), to spare a start of Python and torch: Ctrl-C while it
starts is tested from the shell in tests/test_invisible_tracer.py.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture
def benchmark(monkeypatch):
    """benchmarks/run.py as a module, with benchmarks/ on the path as when it runs as a script."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # undone after the test, with what run.py adds
    spec = importlib.util.spec_from_file_location("benchmark_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.xdist_group("backward_runs")
def test_the_benchmark_runs_in_quick_mode_and_writes_its_figures(benchmark, tmp_path, capsys, monkeypatch,
                                                                shared_timings):
    # The runs of scenarios/backward.py it times are timed once for it and tests/test_below_python.py.
    monkeypatch.setattr(benchmark, "wall_time", shared_timings(benchmark.wall_time))
    output = tmp_path / "results.json"
    assert benchmark.main(["--quick", "--output", str(output)]) == 0
    figures = json.loads(output.read_text())
    assert figures["machine"]["cores"] >= 1 and figures["machine"]["torch"]
    assert set(figures["floor_s"]) == {"import torch"}
    assert set(figures["scenarios"]["backward"]) == {"plain_s", "trace_s"}
    assert figures["imports"]["backward"]["biggest"] != "site"  # Python's own start-up is not counted
    assert figures["debugger"]["adapter_to_stop_in_torch_s"] > 0
    assert figures["debugger"]["adapter_to_exit_s"] > figures["debugger"]["adapter_to_stop_in_torch_s"]
    assert figures["debugger"]["plain_run_s"] == figures["scenarios"]["backward"]["trace_s"]  # the same run
    assert figures["debugger"]["stackTrace_ms"] > 0
    assert set(figures["debugger"]) >= {"threads_ms", "scopes_ms", "variables_ms"}
    assert figures["quickstart_training"]["samples"] == 256
    assert set(figures["against_targets"]) == {"scenario / import torch", "scenario --trace / scenario"}
    assert "target scenario / import torch <= 1.3" in capsys.readouterr().out


# A process that spends at least 0.3 s of CPU, as the suite's workers and the programs they start do.
BURN = "import time\nwhile time.process_time() < 0.3: pass"


def test_suite_times_the_readmes_pytest_and_prints_it_against_60_s(benchmark, monkeypatch, capsys):
    timed = []

    def wall_time(argv, timeout):
        timed.append(argv[1:])
        subprocess.run([sys.executable, "-c", BURN], check=True)
        return 41.6

    monkeypatch.setattr(benchmark, "wall_time", wall_time)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert benchmark.main(["--suite"]) == 0
    assert timed == [["-m", "pytest", "-q", "-p", "no:cacheprovider"]]  # once, with pyproject.toml's -n auto
    line = capsys.readouterr().out.splitlines()[-1]
    found = re.fullmatch(r"suite: 42 s \(target 60 s\); its processes used (\d+) s of CPU, (\d+) s on each of 2 cores", line)
    assert found, line
    assert 0 <= int(found[1]) <= 2 and int(found[2]) <= 1


def test_the_suites_cpu_time_counts_the_processes_it_started(benchmark, monkeypatch):
    def wall_time(argv, timeout):
        subprocess.run([sys.executable, "-c", BURN], check=True)
        return 41.6

    monkeypatch.setattr(benchmark, "wall_time", wall_time)
    seconds, cpu_seconds = benchmark.suite_time()
    assert seconds == 41.6
    assert 0.3 <= cpu_seconds < 5  # the burning process, and Python's start-up


@pytest.mark.parametrize(
    "code, said",
    [
        ("import sys; print('a'); sys.exit('one line on stderr')", "one line on stderr"),
        (  # pytest reports on stdout: the tests that failed, and its last line
            "print('FAILED tests/t.py::test_a - assert 1 == 2'); print('ERROR tests/t.py::test_b');"
            "print('== 1 failed, 1 error, 3 passed in 1.20s =='); raise SystemExit(1)",
            "FAILED tests/t.py::test_a - assert 1 == 2; ERROR tests/t.py::test_b; 1 failed, 1 error, 3 passed in 1.20s",
        ),
        ("raise SystemExit(3)", "(no output)"),
    ],
)
def test_a_failed_command_is_one_line_with_what_it_said_last(benchmark, code, said):
    with pytest.raises(benchmark.BenchmarkFailed) as failed:
        benchmark.wall_time([sys.executable, "-c", code])
    status = 3 if code.endswith("(3)") else 1
    assert str(failed.value) == f"-c {code} failed with status {status}: {said}"


def test_the_suites_line_reads_its_seconds_against_the_target(benchmark):
    assert benchmark.suite_line(59.4, 232.4, 2) == (
        "suite: 59 s (target 60 s); its processes used 232 s of CPU, 116 s on each of 2 cores"
    )
    assert benchmark.suite_line(231.0, 40.0, 4) == (
        "suite: 231 s (target 60 s); its processes used 40 s of CPU, 10 s on each of 4 cores"
    )


def test_suite_and_quick_together_is_one_line_and_status_2(benchmark, capsys):
    with pytest.raises(SystemExit) as stopped:
        benchmark.main(["--suite", "--quick"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "benchmarks/run.py: error: argument --quick: not allowed with argument --suite (see --help)\n"
    )
