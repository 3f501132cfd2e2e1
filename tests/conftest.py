"""Shared helpers for the tests: where the project lives and which scenarios it has."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios._record import ROOT, scenario_names

__all__ = ["ROOT", "recorded_traces", "run_main", "run_script", "scenario_module", "scenario_names", "trace_names"]


def scenario_module(name: str):
    return importlib.import_module(f"scenarios.{name}")


def trace_names(name: str) -> tuple[str, ...]:
    """The traces a scenario saves: its own, or one per rank (scenarios/ddp.py)."""
    return getattr(scenario_module(name), "RECORDED_TRACES", (name,))


def recorded_traces() -> list[str]:
    """Every trace in traces/recorded/, scenario by scenario."""
    return [trace for name in scenario_names() for trace in trace_names(name)]


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a scenario script the way a person does: python scenarios/<name>.py ..."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def fashion_data(tmp_path_factory) -> Path:
    """A data folder with the FashionMNIST stand-in in it, written once per test session."""
    from scenarios._fashion import STANDIN_FOLDER, write_standin

    data = tmp_path_factory.mktemp("data")
    write_standin(data / STANDIN_FOLDER)
    return data


def run_main(name: str, argv: list[str], monkeypatch, capsys) -> tuple[object, list[str]]:
    """Run scenarios/<name>.py's main(argv) in this process: the facts its lesson returned,
    and the lines it printed (the narrative, then the trace when asked for).

    In-process, to spare a torch import per run; what the script prints is the same.
    """
    module = scenario_module(name)
    returned = []
    run_scenario = module.run_scenario

    def run_keeping_the_facts(scenario, lesson, narrate, **kwargs):
        def lesson_kept(**options):
            returned.append(lesson(**options))
            return returned[-1]

        return run_scenario(scenario, lesson_kept, narrate, **kwargs)

    monkeypatch.setattr(module, "run_scenario", run_keeping_the_facts)
    capsys.readouterr()  # start from nothing printed
    assert module.main(argv) == 0
    [facts] = returned
    return facts, capsys.readouterr().out.splitlines()
