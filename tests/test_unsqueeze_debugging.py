"""Where F11 on `x.unsqueeze(0)` goes: to the next line. Without --trace no Python runs;
with it, the trace's dispatch mode runs Python (torch's dispatch rule lookup first),
which the debugger extension (pydevd_plugins/) steps past."""

import sys
from pathlib import Path

import torch

import scenarios.unsqueeze
from traces import Tracer
from vscode_files import scenario_configuration, substitute

UNSQUEEZE_LINE = "u = x.unsqueeze(0)"
DISPATCH_RULE = ("find_torch_dispatch_rule", Path(torch.__file__).parent / "_library" / "simple_registry.py")


def python_calls_during_unsqueeze(tracer: Tracer) -> list[tuple[str, Path]]:
    """The Python functions entered while x.unsqueeze(0) runs: where F11 could stop."""
    x = torch.tensor([1.0, 2.0, 3.0])
    calls = []

    def watch(frame, event, arg):
        if event == "call":
            calls.append((frame.f_code.co_name, Path(frame.f_code.co_filename)))
        return None

    previous = sys.gettrace()  # a debugger's, when the tests run under one
    with tracer.recording():
        sys.settrace(watch)
        try:
            x.unsqueeze(0)
        finally:
            sys.settrace(previous)
    return calls


def test_without_the_trace_unsqueeze_runs_no_python():
    assert python_calls_during_unsqueeze(Tracer(enabled=False)) == []


def test_with_the_trace_the_first_python_unsqueeze_reaches_is_the_dispatch_rule_lookup():
    assert python_calls_during_unsqueeze(Tracer())[0] == DISPATCH_RULE


def test_under_its_launch_configuration_f11_on_unsqueeze_moves_to_the_next_line(unsqueeze_session):
    path = scenarios.unsqueeze.__file__
    lines = Path(path).read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if UNSQUEEZE_LINE in text)
    next_line = line + 1 + next(i for i, text in enumerate(lines[line:]) if text.strip() and not text.strip().startswith("#"))
    configuration = unsqueeze_session["configuration"]  # one debug session, shared (tests/conftest.py)
    assert configuration == substitute(scenario_configuration("unsqueeze"))
    assert "--trace" in configuration["args"]
    assert unsqueeze_session["line"] == line
    placed = unsqueeze_session["placed"]
    assert placed["verified"] is True, placed
    assert unsqueeze_session["step_reason"] == "step"
    frame = unsqueeze_session["after_step"]
    assert (Path(frame["source"]["path"]), frame["line"]) == (Path(path), next_line)
