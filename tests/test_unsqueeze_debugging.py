"""Where F11 on `x.unsqueeze(0)` goes: to the next line. Without --trace no Python runs;
with it, the trace's dispatch mode runs Python (torch's dispatch rule lookup first),
which the debugger extension (pydevd_plugins/) steps past."""

import re
import sys
from pathlib import Path

import pytest
import torch

import scenarios.unsqueeze
from dap_client import DebugSession, first_body_line
from test_readme_debugging import row
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


@pytest.fixture(scope="module")
def unsqueeze_session() -> dict:
    """One session of "Scenario: unsqueeze" from .vscode/launch.json, read by the two tests below:
    F11 on ``u = x.unsqueeze(0)``, then a breakpoint in torch.autograd.backward, where the graph
    below ``tensors`` is read (the README's row for this configuration)."""
    path = scenarios.unsqueeze.__file__
    lines = Path(path).read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if UNSQUEEZE_LINE in text)
    torch_path, torch_line = first_body_line(torch.autograd.backward)
    seen = {"configuration": substitute(scenario_configuration("unsqueeze")), "line": line}
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


def test_under_its_launch_configuration_f11_on_unsqueeze_moves_to_the_next_line(unsqueeze_session):
    path = scenarios.unsqueeze.__file__
    lines = Path(path).read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if UNSQUEEZE_LINE in text)
    next_line = line + 1 + next(i for i, text in enumerate(lines[line:]) if text.strip() and not text.strip().startswith("#"))
    configuration = unsqueeze_session["configuration"]
    assert configuration == substitute(scenario_configuration("unsqueeze"))
    assert "--trace" in configuration["args"]
    assert unsqueeze_session["line"] == line
    placed = unsqueeze_session["placed"]
    assert placed["verified"] is True, placed
    assert unsqueeze_session["step_reason"] == "step"
    frame = unsqueeze_session["after_step"]
    assert (Path(frame["source"]["path"]), frame["line"]) == (Path(path), next_line)


def test_unsqueeze_nodes_are_one_level_under_each_sum(unsqueeze_session):
    # The README's row for "Scenario: unsqueeze" (tests/test_readme_debugging.py checks the others').
    placed = unsqueeze_session["placed_in_torch"]
    assert placed["verified"] is True, placed
    found = unsqueeze_session["next_functions"]
    assert found == {
        "next_functions": ["SumBackward0", "SumBackward0"],
        "next_functions[0][0].next_functions": ["UnsqueezeBackward0"],
        "next_functions[1][0].next_functions": ["UnsqueezeBackward1"],
    }
    text = row("unsqueeze")
    assert "`tensors.grad_fn.next_functions` (two `SumBackward0`)" in text
    assert "`UnsqueezeBackward0` (out of place) under the first and `UnsqueezeBackward1` (in place) under the second" in text
