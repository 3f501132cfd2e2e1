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


# -- debug sessions shared by several test files (i23-suite-b) ------------------------------------
# A debug session starts the debugpy adapter and a debuggee that imports torch: seconds each.
# A session that several files read runs once per test session, here; each test asserts its facts.


@pytest.fixture(scope="session")
def unsqueeze_session() -> dict:
    """One session of "Scenario: unsqueeze" from .vscode/launch.json: F11 on ``u = x.unsqueeze(0)``
    (tests/test_unsqueeze_debugging.py), then a breakpoint in torch.autograd.backward, where the
    graph below ``tensors`` is read (the README's row, tests/test_readme_debugging.py)."""
    import re

    import torch

    import scenarios.unsqueeze
    from dap_client import DebugSession, first_body_line
    from vscode_files import scenario_configuration, substitute

    path = scenarios.unsqueeze.__file__
    lines = Path(path).read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if "u = x.unsqueeze(0)" in text)
    torch_path, torch_line = first_body_line(torch.autograd.backward)
    seen = {"configuration": substitute(scenario_configuration("unsqueeze")), "path": path, "line": line}
    with DebugSession() as session:
        session.initialize()
        launch = session.launch(seen["configuration"])
        [seen["placed"]] = session.set_breakpoints(path, [line])
        session.request("configurationDone")
        session.response(launch)
        thread_id = session.wait_for_event("stopped")["body"]["threadId"]
        session.request("stepIn", {"threadId": thread_id})
        seen["step_reason"] = session.wait_for_event("stopped")["body"]["reason"]
        seen["after_step"] = session.top_frame(thread_id)

        session.set_breakpoints(path, [])
        [seen["placed_in_torch"]] = session.set_breakpoints(torch_path, [torch_line])
        session.request("continue", {"threadId": thread_id})
        frame = session.top_frame(session.wait_for_event("stopped")["body"]["threadId"])["id"]
        seen["next_functions"] = {
            expression: re.findall(r"<(\w+) object", session.evaluate(f"tensors.grad_fn.{expression}", frame))
            for expression in ("next_functions", "next_functions[0][0].next_functions", "next_functions[1][0].next_functions")
        }
    return seen
