"""End to end: the backward scenario's launch configuration stops inside torch.

No mocks: the real debugpy adapter, driven over stdio the way VSCode drives it
(see dap_client.py), starts the scenario from the configuration in the real
.vscode/launch.json, and the breakpoints are set in the installed torch.
"""

import ast
import inspect
import textwrap
from pathlib import Path

import pytest
import torch

import scenarios.backward
import test_launch_configs
from conftest import ROOT
from dap_client import DebugSession, first_body_line
from scenarios._debugger import TURN_OFF_VARIABLE
from vscode_files import debug_test_configuration, scenario_configuration, substitute


def line_calling(function, method: str, on: str) -> tuple[str, int]:
    """The file and line where ``function`` first calls ``on.method()``."""
    lines, first_line = inspect.getsourcelines(function)
    for node in ast.walk(ast.parse(textwrap.dedent("".join(lines)))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == on
        ):
            return inspect.getsourcefile(function), first_line + node.lineno - 1
    raise LookupError(f"{function.__name__} never calls {on}.{method}()")


# Read in the paused program: is TCP_NODELAY set on pydevd's socket to the adapter?
NODELAY_OF_THE_DEBUGGER_SOCKET = (
    "__import__('pydevd').get_global_debugger().writer.sock"
    ".getsockopt(__import__('socket').IPPROTO_TCP, __import__('socket').TCP_NODELAY)"
)


def in_torch(path: str, *inside: str) -> bool:
    """Whether ``path`` is the file torch/<inside...> of the installed torch."""
    return Path(path).resolve() == Path(torch.__file__).resolve().parent.joinpath(*inside)


@pytest.fixture
def backward_configuration() -> dict:
    """The backward scenario's configuration from .vscode/launch.json, variables substituted."""
    return substitute(scenario_configuration("backward"))


def test_a_breakpoint_in_torch_autograd_backward_stops_there(backward_configuration):
    path, line = first_body_line(torch.autograd.backward)
    assert backward_configuration["justMyCode"] is False
    with DebugSession() as session:
        session.initialize()
        launch = session.launch({**backward_configuration, "env": {TURN_OFF_VARIABLE: None}})  # None: unset
        [placed] = session.set_breakpoints(path, [line])
        session.request("configurationDone")
        session.response(launch)  # the adapter answers "launch" only now

        assert placed["verified"] is True, placed
        assert placed["line"] == line
        stopped = session.wait_for_event("stopped")
        assert stopped["body"]["reason"] == "breakpoint"
        frame = session.top_frame(stopped["body"]["threadId"])
        assert in_torch(frame["source"]["path"], "autograd", "__init__.py")
        assert (frame["name"], frame["line"]) == ("backward", line)
        tensors = session.local_variables(frame["id"])["tensors"]
        # y = a * b = (1 + 2) * (1 + 1), the scenario's first y.backward()
        assert tensors["type"] == "Tensor"
        assert tensors["value"] == "tensor(6., grad_fn=<MulBackward0>)"
        # The runner turned Nagle's algorithm off on the debugger's socket (scenarios/_debugger.py).
        assert int(session.evaluate(NODELAY_OF_THE_DEBUGGER_SOCKET, frame["id"])) != 0

        assert session.set_breakpoints(path, []) == []  # so the later backward() calls run through
        session.request("continue", {"threadId": stopped["body"]["threadId"]})
        assert session.run_to_end() == 0
        assert "w.grad = 5.0" in session.terminal_output()


def test_with_just_my_code_the_breakpoint_in_torch_is_refused(backward_configuration):
    path, line = first_body_line(torch.autograd.backward)
    with DebugSession() as session:
        session.initialize()
        session.launch({**backward_configuration, "justMyCode": True})
        [placed] = session.set_breakpoints(path, [line])
        session.request("configurationDone")

        assert placed["verified"] is False
        assert "justMyCode" in placed["message"]
        assert session.run_to_end() == 0
        assert session.events("stopped") == []
        assert "w.grad = 5.0" in session.terminal_output()


def test_step_in_from_the_scenario_lands_in_tensor_backward(backward_configuration):
    path, line = line_calling(scenarios.backward.backward_pass, "backward", on="y")
    tensor_backward_lines, tensor_backward_start = inspect.getsourcelines(torch.Tensor.backward)
    with DebugSession() as session:
        session.initialize()
        session.launch(backward_configuration)
        [placed] = session.set_breakpoints(path, [line])
        session.request("configurationDone")

        assert placed["verified"] is True, placed
        stopped = session.wait_for_event("stopped")
        thread_id = stopped["body"]["threadId"]
        frame = session.top_frame(thread_id)
        assert (Path(frame["source"]["path"]), frame["line"]) == (Path(path), line)

        session.request("stepIn", {"threadId": thread_id})
        stepped = session.wait_for_event("stopped")
        assert stepped["body"]["reason"] == "step"
        frame = session.top_frame(thread_id)
        assert in_torch(frame["source"]["path"], "_tensor.py")
        assert frame["name"] == "backward"
        assert tensor_backward_start <= frame["line"] < tensor_backward_start + len(tensor_backward_lines)


def test_with_the_variable_set_the_debugger_socket_keeps_nagle(backward_configuration):
    path, line = first_body_line(torch.autograd.backward)
    with DebugSession() as session:
        session.initialize()
        session.launch({**backward_configuration, "env": {TURN_OFF_VARIABLE: "1"}})
        session.set_breakpoints(path, [line])
        session.request("configurationDone")

        stopped = session.wait_for_event("stopped")
        frame = session.top_frame(stopped["body"]["threadId"])
        assert in_torch(frame["source"]["path"], "autograd", "__init__.py")
        assert int(session.evaluate(NODELAY_OF_THE_DEBUGGER_SOCKET, frame["id"])) == 0


def test_a_test_run_under_the_debug_test_configuration_sets_nodelay_too():
    # What VSCode's "Debug Test" does: the configuration with purpose debug-test, running pytest.
    # The Python extension replaces "program" with its pytest runner; run pytest as a module instead.
    configuration = substitute({key: value for key, value in debug_test_configuration().items() if key != "program"})
    test_file, line = first_body_line(test_launch_configs.test_launch_json_has_configurations)
    node_id = f"{Path(test_file).relative_to(ROOT)}::test_launch_json_has_configurations"
    with DebugSession() as session:
        session.initialize()
        session.launch({**configuration, "module": "pytest", "args": ["-q", "-p", "no:cacheprovider", node_id]})
        [placed] = session.set_breakpoints(test_file, [line])
        session.request("configurationDone")

        assert placed["verified"] is True, placed
        stopped = session.wait_for_event("stopped")
        frame = session.top_frame(stopped["body"]["threadId"])
        assert frame["name"] == "test_launch_json_has_configurations"
        assert int(session.evaluate(NODELAY_OF_THE_DEBUGGER_SOCKET, frame["id"])) != 0
        session.request("continue", {"threadId": stopped["body"]["threadId"]})
        assert session.run_to_end() == 0
        assert "1 passed" in session.terminal_output()
