"""What the breakpoint table of docs/debugger.md (once the README's) says the debugger shows, checked in a real debug session
of each scenario's launch configuration (the real debugpy adapter, see dap_client.py): one
session per scenario, checking every statement of its row. The unsqueeze row is checked in
tests/test_unsqueeze_debugging.py, in the session that also checks F11 on x.unsqueeze(0)."""

import inspect

import torch
from dap_client import DebugSession, first_body_line
from doc_pages import page
from test_debug_session import expand
from torch.autograd import graph
from vscode_files import scenario_configuration, substitute

PAGE = page("debugger.md")  # the breakpoint table and the Variables pane


def row(scenario: str) -> str:
    """The breakpoint-table row of the configuration named "Scenario: <scenario>"."""
    [found] = [line for line in PAGE.splitlines() if line.startswith(f'| "Scenario: {scenario}"')]
    return found


def next_stop_or_exit(session: DebugSession, timeout: float = 120) -> dict:
    """The next "stopped" or "exited" event, whichever comes first."""

    def find():
        for index, message in enumerate(session.messages):
            if index not in session._consumed and message.get("event") in ("stopped", "exited"):
                session._consumed.add(index)
                return message
        return None

    return session._wait(find, timeout, "a stop or the exit")


def started(session: DebugSession, scenario: str, path: str, line: int) -> None:
    session.initialize()
    launch = session.launch(substitute(scenario_configuration(scenario)))
    [placed] = session.set_breakpoints(path, [line])
    session.request("configurationDone")
    session.response(launch)
    assert placed["verified"] is True, placed


def test_in_place_stops_four_times_per_backward_call_24_in_all():
    lines, first = inspect.getsourcelines(graph._engine_run_backward)
    line = first + next(n for n, text in enumerate(lines) if "return Variable._execution_engine.run_backward(" in text)
    callers = []  # the lesson's line each stop came from
    with DebugSession() as session:
        started(session, "in_place", inspect.getsourcefile(graph._engine_run_backward), line)
        while (event := next_stop_or_exit(session))["event"] == "stopped":
            thread = event["body"]["threadId"]
            frames = session.request("stackTrace", {"threadId": thread, "startFrame": 0, "levels": 8})["stackFrames"]
            assert (frames[0]["name"], frames[0]["line"]) == ("_engine_run_backward", line)
            callers.append(next(frame["line"] for frame in frames if frame["name"] == "in_place"))
            session.request("continue", {"threadId": thread})
        assert event["body"]["exitCode"] == 0
    calls = list(dict.fromkeys(callers))
    assert len(calls) == 6 and callers == [call for call in calls for _ in range(4)]
    text = row("in-place operations")
    assert "The lesson calls it six times, and it stops here four times per call, 24 in all" in text


def test_quickstart_call_impl_sees_flatten_and_a_fresh_linear_weight_at_version_1():
    path, line = first_body_line(torch.nn.Module._call_impl)
    kinds = []
    with DebugSession() as session:
        started(session, "quickstart", path, line)
        while len(kinds) < 4:
            thread = session.wait_for_event("stopped")["body"]["threadId"]
            frame = session.top_frame(thread)["id"]
            kinds.append(session.evaluate("type(self).__name__", frame).strip("'"))
            if len(kinds) < 4:
                session.request("continue", {"threadId": thread})
        weight = expand(session, session.local_variables(frame)["self"])["weight"]["value"]
    assert kinds == ["NeuralNetwork", "Flatten", "Sequential", "Linear"]
    assert weight == "Parameter[512, 784] float32 cpu · leaf · requires_grad · v1"
    text = row("the quickstart")
    assert "from `NeuralNetwork` to `Flatten` to `Sequential` to `Linear`" in text
    assert f"`weight` reads `{weight}`" in text
    assert "an `nn.Linear`'s weight shows `· v1` from the start" in PAGE  # the Variables pane section
