"""End to end, with the real debugpy adapter (dap_client.py): F11 from backward lands in
traces/mirror/engine.py, and a conditional breakpoint there stops at one node with its locals."""

import inspect
from pathlib import Path

from dap_client import DebugSession
from test_debug_session import line_calling, stopped_on_users_backward
from vscode_files import scenario_configuration, substitute

import scenarios.engine
from traces.mirror import engine

ENGINE_FILE = Path(engine.__file__).resolve()


def line_of(function, text: str) -> int:
    lines, start = inspect.getsourcelines(function)
    return start + next(i for i, line in enumerate(lines) if text in line)


def test_f11_from_engine_backward_lands_in_traces_engine_and_stops_at_one_node():
    path, backward_line = line_calling(scenarios.engine.engine_run, "backward", on="engine")
    step_line = line_of(engine.evaluate_function, "step = Step(")
    with DebugSession() as session:
        session.initialize()
        session.launch(substitute(scenario_configuration("engine")))
        session.set_breakpoints(path, [backward_line])
        session.request("configurationDone")

        thread_id = session.wait_for_event("stopped")["body"]["threadId"]
        session.set_breakpoints(path, [])
        session.request("stepIn", {"threadId": thread_id})
        assert session.wait_for_event("stopped")["body"]["reason"] == "step"
        frame = session.top_frame(thread_id)
        assert (Path(frame["source"]["path"]).resolve(), frame["name"]) == (ENGINE_FILE, "backward")

        session.request("setBreakpoints", {
            "source": {"path": str(ENGINE_FILE)},
            "breakpoints": [{"line": step_line, "condition": 'name == "MulBackward0"'}],
        })
        session.request("continue", {"threadId": thread_id})
        session.wait_for_event("stopped")
        frame = session.top_frame(thread_id)
        assert (frame["name"], frame["line"]) == ("evaluate_function", step_line)
        assert session.evaluate("name", frame["id"]) == "'MulBackward0'"
        assert session.evaluate("[g.item() for g in grads_arriving]", frame["id"]) == "[1.0]"
        assert session.evaluate("[g.item() for g in grads_leaving]", frame["id"]) == "[2.0, 3.0]"
        assert "mul_tensor_backward" in session.evaluate("formula", frame["id"])
        session.request("setBreakpoints", {"source": {"path": str(ENGINE_FILE)}, "breakpoints": []})
        session.request("continue", {"threadId": thread_id})
        assert session.run_to_end() == 0


def test_f11_from_loss_backward_under_engine_python_reaches_traces_engine(tmp_path):
    with DebugSession() as session:
        _, _, thread_id = stopped_on_users_backward(session, "Current file, backward in Python", tmp_path)
        stops = []
        while len(stops) < 60:
            session.request("stepIn", {"threadId": thread_id})
            assert session.wait_for_event("stopped")["body"]["reason"] == "step"
            frame = session.top_frame(thread_id)
            stops.append((Path(frame["source"]["path"]).resolve(), frame["name"]))
            if stops[-1][0] == ENGINE_FILE:
                break
        assert stops[-1] == (ENGINE_FILE, "backward")
        session.request("continue", {"threadId": thread_id})
        assert session.run_to_end() == 0
        assert "w.grad [3.0, 3.0]" in session.terminal_output()
