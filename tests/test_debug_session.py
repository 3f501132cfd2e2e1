"""End to end: the launch configurations stop inside torch, and the debugger extension
(pydevd_plugins/) shows tensors and autograd nodes, answers at once and steps past the
tracer, in every process debugpy debugs.

No mocks: the real debugpy adapter, driven over stdio the way VSCode drives it
(see dap_client.py), starts the program from the configuration in the real
.vscode/launch.json, and the breakpoints are set in the installed torch.
"""

import ast
import inspect
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import scenarios.backward
import test_launch_configs
from conftest import ROOT
from dap_client import DebugSession, first_body_line
from pydevd_plugins.extensions.stepthrough_session import KEEP_NAGLE_VARIABLE, STOCK_VARIABLE
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


def scenario_line(function, text: str) -> tuple[str, int]:
    """The file and line of the statement ``text`` in ``function``."""
    lines, first_line = inspect.getsourcelines(function)
    [index] = [index for index, line in enumerate(lines) if line.strip() == text]
    return inspect.getsourcefile(function), first_line + index


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


@pytest.fixture(scope="module")
def backward_session() -> dict:
    """One debug session of the backward scenario's configuration (with --trace), shared by the
    tests that read it: what F11 does at ``a = w + x`` and through the first ``y.backward()``
    (the traced one), then what a breakpoint in torch.autograd.backward shows at the next call
    (the second ``y.backward()``, on the same y), then the run to its end."""
    configuration = substitute(scenario_configuration("backward"))
    path, add_line = scenario_line(scenarios.backward.backward_pass, "a = w + x")
    _, backward_line = line_calling(scenarios.backward.backward_pass, "backward", on="y")
    torch_path, torch_line = first_body_line(torch.autograd.backward)
    seen = {"step_reasons": [], "stops": []}
    with DebugSession() as session:
        session.initialize()
        launch = session.launch({**configuration, "env": {KEEP_NAGLE_VARIABLE: None}})  # None: unset
        session.set_breakpoints(path, [add_line])
        session.request("configurationDone")
        session.response(launch)  # the adapter answers "launch" only now

        thread_id = session.wait_for_event("stopped")["body"]["threadId"]
        session.request("stepIn", {"threadId": thread_id})  # w + x runs in C++ (and through the trace's mode)
        seen["step_reasons"].append(session.wait_for_event("stopped")["body"]["reason"])
        seen["after_add"] = session.top_frame(thread_id)

        # F11 all the way through y.backward(): torch's Python, never the trace's hooks or mode.
        session.set_breakpoints(path, [backward_line])
        session.request("continue", {"threadId": thread_id})
        session.wait_for_event("stopped")
        session.set_breakpoints(path, [])
        while len(seen["stops"]) < 400:
            session.request("stepIn", {"threadId": thread_id})
            seen["step_reasons"].append(session.wait_for_event("stopped")["body"]["reason"])
            frame = session.top_frame(thread_id)
            seen["stops"].append((frame["source"]["path"], frame["name"], frame["line"]))
            if Path(frame["source"]["path"]) == Path(path) and frame["line"] > backward_line:
                break

        # A breakpoint in torch: the next backward() stops there.
        [seen["placed"]] = session.set_breakpoints(torch_path, [torch_line])
        session.request("continue", {"threadId": thread_id})
        seen["stopped"] = session.wait_for_event("stopped")
        seen["frame"] = frame = session.top_frame(seen["stopped"]["body"]["threadId"])
        seen["tensors"] = session.local_variables(frame["id"])["tensors"]
        seen["nodelay"] = int(session.evaluate(NODELAY_OF_THE_DEBUGGER_SOCKET, frame["id"]))
        seen["cleared"] = session.set_breakpoints(torch_path, [])  # so the later backward() calls run through
        session.request("continue", {"threadId": thread_id})
        seen["exit_code"] = session.run_to_end()
        seen["output"] = session.terminal_output()
    return seen


@pytest.mark.xdist_group("backward_session")  # one worker runs the session they share
def test_a_breakpoint_in_torch_autograd_backward_stops_there(backward_configuration, backward_session):
    path, line = first_body_line(torch.autograd.backward)
    assert backward_configuration["justMyCode"] is False
    placed = backward_session["placed"]
    assert placed["verified"] is True, placed
    assert placed["line"] == line
    stopped = backward_session["stopped"]
    assert stopped["body"]["reason"] == "breakpoint"
    frame = backward_session["frame"]
    assert in_torch(frame["source"]["path"], "autograd", "__init__.py")
    assert (frame["name"], frame["line"]) == ("backward", line)
    tensors = backward_session["tensors"]
    # y = a * b = (1 + 2) * (1 + 1), the y of the scenario's y.backward() calls
    assert tensors["type"] == "Tensor"
    assert tensors["value"] == "Tensor[] float32 cpu = 6 · grad_fn=MulBackward0"
    # The extension turned Nagle's algorithm off on the debugger's socket.
    assert backward_session["nodelay"] != 0
    assert backward_session["cleared"] == []
    assert backward_session["exit_code"] == 0
    assert "w.grad = 5.0" in backward_session["output"]


@pytest.mark.xdist_group("backward_session")  # one worker runs the session they share
def test_step_in_under_trace_never_enters_the_tracer(backward_configuration, backward_session):
    path, _ = scenario_line(scenarios.backward.backward_pass, "a = w + x")
    _, next_line = scenario_line(scenarios.backward.backward_pass, "b = w + 1")
    _, backward_line = line_calling(scenarios.backward.backward_pass, "backward", on="y")
    assert backward_configuration["args"][:1] == ["--trace"]
    assert set(backward_session["step_reasons"]) == {"step"}
    frame = backward_session["after_add"]
    assert (Path(frame["source"]["path"]), frame["line"]) == (Path(path), next_line)

    stops = backward_session["stops"]
    first_path, first_name, first_line = stops[0]  # the first F11 lands in torch/_tensor.py Tensor.backward
    lines, start = inspect.getsourcelines(torch.Tensor.backward)
    assert in_torch(first_path, "_tensor.py") and first_name == "backward"
    assert start <= first_line < start + len(lines)
    last_path, _, last_line = stops[-1]
    assert Path(last_path) == Path(path) and last_line > backward_line
    assert "backward" in {name for source, name, _ in stops if in_torch(source, "_tensor.py")}
    assert "backward" in {name for source, name, _ in stops if in_torch(source, "autograd", "__init__.py")}
    assert [stop for stop in stops if "traces" in Path(stop[0]).parts or "_library" in Path(stop[0]).parts] == []
    assert backward_session["exit_code"] == 0
    assert "AccumulateGrad" in backward_session["output"]  # the trace was recorded and printed


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


def test_with_the_variable_set_the_debugger_socket_keeps_nagle(backward_configuration):
    path, line = first_body_line(torch.autograd.backward)
    with DebugSession() as session:
        session.initialize()
        session.launch({**backward_configuration, "env": {KEEP_NAGLE_VARIABLE: "1"}})
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


# -- the debugger extension, on a file of the user's own ----------------------------------

USER_SCRIPT = '''\
import torch

unpacked = []
weight = torch.nn.Parameter(torch.randn(512, 784))
bias = torch.nn.Parameter(torch.zeros(512))
x = torch.randn(64, 784)
h = torch.nn.functional.linear(x, weight, bias)
row = torch.tensor([1.0, 2.0, 3.0]).unsqueeze(0)
nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: unpacked.append(t) or t):
    hooked = weight.sin()
loss = h.relu().sum()
loss.backward()
print("unpacked", len(unpacked))
'''
AFTER_BACKWARD = USER_SCRIPT.splitlines().index('print("unpacked", len(unpacked))') + 1

# A user's own module called traces, beside the script: the extension must never import it.
USERS_TRACES = 'print("the user\'s traces.py ran")\nOWN = "the user\'s own"\n'
UNUSUAL_SCRIPT = """\
import torch

h = torch.randn(3, 4)
freed = torch.ones(4)
freed.untyped_storage().resize_(0)  # as FSDP frees a parameter: reading its values would crash
large_freed = torch.ones(100)
large_freed.untyped_storage().resize_(0)
leaves = [torch.ones(1, requires_grad=True) for _ in range(10000)]
joined = torch.cat(leaves)
pair = [h, torch.ones(5)]
with_freed = {"freed": freed}
x = torch.ones(4, requires_grad=True)
last = torch.cat([x, x], dim=-1)
print("stopped here")
import traces
print("traces is", traces.OWN)
"""

OPTIMIZER_SCRIPT = '''\
import torch

weight = torch.nn.Parameter(torch.ones(3))
optimizer = torch.optim.SGD([weight], lr=0.1)
weight.sum().backward()
optimizer.step()
optimizer.step()  # again
print("weight", weight.tolist())
'''

# One file that holds the three programs: one debug session reads them all (current_file_session).
CURRENT_FILE_SCRIPT = USER_SCRIPT + OPTIMIZER_SCRIPT + UNUSUAL_SCRIPT
STEP_LINE = CURRENT_FILE_SCRIPT.splitlines().index("optimizer.step()") + 1
UNUSUAL_STOP = CURRENT_FILE_SCRIPT.splitlines().index('print("stopped here")') + 1


def current_file_configuration(file: Path) -> dict:
    """ "Current file (into torch)" with ``file`` in the editor, as VSCode fills it in."""
    [config] = [c for c in test_launch_configs.CONFIGURATIONS if "debug-in-terminal" in c.get("purpose", [])]
    return substitute(config, file=file)


def expand(session: DebugSession, variable: dict) -> dict[str, dict]:
    """A variable's children, by name, as the Variables pane shows them when expanded."""
    assert variable["variablesReference"] != 0, variable
    found = session.request("variables", {"variablesReference": variable["variablesReference"]})["variables"]
    return {child["name"]: child for child in found}


def program_frame(session: DebugSession, thread_id: int, path: Path) -> dict:
    frames = session.request("stackTrace", {"threadId": thread_id, "startFrame": 0, "levels": 50})["stackFrames"]
    return next(frame for frame in frames if Path(frame["source"].get("path", "")) == path)


@pytest.fixture(scope="module")
def current_file_session(tmp_path_factory) -> dict:
    """One session of "Current file (into torch)" on a user's file that holds three programs
    (USER_SCRIPT, OPTIMIZER_SCRIPT, UNUSUAL_SCRIPT), with the user's own traces.py beside it:
    where each stop was, and what the Variables pane, hover, Watch and the Debug Console
    showed there, for the tests below."""
    folder = tmp_path_factory.mktemp("user")
    script = folder / "my_model.py"  # outside the repository, as a user's own file is
    script.write_text(CURRENT_FILE_SCRIPT)
    (folder / "traces.py").write_text(USERS_TRACES)
    path, line = first_body_line(torch.autograd.backward)
    seen = {"script": script}
    with DebugSession() as session:
        session.initialize()
        launch = session.launch(current_file_configuration(script))
        session.set_breakpoints(path, [line])
        seen["placed"] = session.set_breakpoints(str(script), [AFTER_BACKWARD, STEP_LINE, STEP_LINE + 1, UNUSUAL_STOP])
        session.request("configurationDone")
        session.response(launch)

        # 1. In torch.autograd.backward, called by loss.backward(): the user's frame, below torch's.
        thread_id = session.wait_for_event("stopped")["body"]["threadId"]
        frame_id = program_frame(session, thread_id, script)["id"]
        local = seen["in_backward"] = session.local_variables(frame_id)
        seen["nodelay"] = int(session.evaluate(NODELAY_OF_THE_DEBUGGER_SOCKET, frame_id))
        seen["h_in"] = {
            context: session.request("evaluate", {"expression": "h", "frameId": frame_id, "context": context})["result"]
            for context in ("hover", "watch")
        }
        seen["h_in"]["repl"] = session.evaluate("h", frame_id)
        seen["h"] = expand(session, local["h"])
        seen["h attributes"] = expand(session, seen["h"]["all attributes"])
        seen["row"] = expand(session, local["row"])

        # From the loss down to every leaf: loss -> ReluBackward0 -> AddmmBackward0 -> ...
        leaves, nodes = {}, [expand(session, local["loss"])["grad_fn"]]
        while nodes:
            node = nodes.pop()
            children = expand(session, node)
            if "variable" in children:
                leaves[node["value"]] = children["variable"]["value"]
            nodes += [child for name, child in children.items() if name.startswith("next_functions[") and child["variablesReference"]]
        seen["leaves"] = leaves
        seen["sin"] = expand(session, expand(session, local["hooked"])["grad_fn"])
        seen["unpacked"] = session.evaluate("len(unpacked)", frame_id)

        # 2. After backward.
        session.set_breakpoints(path, [])
        session.request("continue", {"threadId": thread_id})
        thread_id = session.wait_for_event("stopped")["body"]["threadId"]
        seen["after_backward_frame"] = frame = session.top_frame(thread_id)
        local = seen["after_backward"] = session.local_variables(frame["id"])
        relu = expand(session, expand(session, local["loss"])["grad_fn"])["next_functions[0]"]
        seen["relu"] = relu
        seen["relu saved result"] = expand(session, relu)["saved result"]

        # 3. The optimizer: F11 on optimizer.step() goes into torch's wrapper.
        session.request("continue", {"threadId": thread_id})
        thread_id = session.wait_for_event("stopped")["body"]["threadId"]
        seen["step_line_frame"] = session.top_frame(thread_id)
        session.request("stepIn", {"threadId": thread_id})
        session.wait_for_event("stopped")
        seen["into_step"] = session.top_frame(thread_id)

        # "Step Into Target" on the second call lands in the same wrapper.
        session.request("continue", {"threadId": thread_id})
        session.wait_for_event("stopped")
        seen["second_step_line"] = session.top_frame(thread_id)["line"]
        session.set_breakpoints(str(script), [UNUSUAL_STOP])
        targets = session.request("stepInTargets", {"frameId": session.top_frame(thread_id)["id"]})["targets"]
        [target] = [target for target in targets if target["label"].startswith("optimizer.step()")]
        session.request("stepIn", {"threadId": thread_id, "targetId": target["id"]})
        session.wait_for_event("stopped")
        seen["into_step_target"] = session.top_frame(thread_id)

        # A function breakpoint on "step" goes to SGD.step, and on "_single_tensor_sgd" to its loop.
        [seen["placed_step"]] = session.request("setFunctionBreakpoints", {"breakpoints": [{"name": "step"}]})["breakpoints"]
        session.request("continue", {"threadId": thread_id})
        seen["step_reason"] = session.wait_for_event("stopped")["body"]["reason"]
        seen["in_sgd_step"] = session.top_frame(thread_id)
        session.request("setFunctionBreakpoints", {"breakpoints": [{"name": "_single_tensor_sgd"}]})
        session.request("continue", {"threadId": thread_id})
        session.wait_for_event("stopped")
        seen["in_single_tensor_sgd"] = session.top_frame(thread_id)
        session.request("setFunctionBreakpoints", {"breakpoints": []})

        # 4. Unusual values, before the program imports its own traces.
        session.request("continue", {"threadId": thread_id})
        thread_id = session.wait_for_event("stopped")["body"]["threadId"]
        seen["unusual_frame"] = frame = session.top_frame(thread_id)
        frame_id = frame["id"]
        local = seen["unusual"] = session.local_variables(frame_id)
        seen["large_freed"] = expand(session, local["large_freed"])

        # Copy Value copies the values (the full repr, as stock debugpy); hover shows the line.
        seen["evaluated"] = {
            (expression, context): session.request(
                "evaluate", {"expression": expression, "frameId": frame_id, "context": context}
            )["result"]
            for expression in ("h", "freed", "with_freed")
            for context in ("clipboard", "repl", "hover")
        }
        # A node with 10,000 inputs: one capped line, its inputs in pages of 100.
        seen["joined node"] = node = expand(session, local["joined"])["grad_fn"]
        seen["joined children"] = children = expand(session, node)
        pages = [name for name in children if name.startswith("next_functions")]
        seen["joined first page"] = expand(session, children[pages[0]])
        seen["last"] = expand(session, expand(session, local["last"])["grad_fn"])

        session.set_breakpoints(str(script), [])
        session.request("continue", {"threadId": thread_id})
        seen["exit_code"] = session.run_to_end()
        seen["output"] = session.terminal_output()
    return seen


@pytest.mark.xdist_group("current_file_session")  # one worker runs the session they share
def test_current_file_shows_tensors_and_the_autograd_graph(current_file_session):
    seen = current_file_session
    local = seen["in_backward"]
    assert local["h"]["value"] == "Tensor[64, 512] float32 cpu · grad_fn=AddmmBackward0"
    assert (local["weight"]["type"], local["weight"]["value"]) == (
        "Parameter",
        "Parameter[512, 784] float32 cpu · leaf · requires_grad",
    )
    assert local["row"]["value"] == "Tensor[1, 3] float32 cpu = [[1, 2, 3]] · view of [3]"
    assert local["nested"]["value"].startswith("nested_tensor([")  # no one-line form: stock repr
    assert seen["nodelay"] != 0

    # Hover and Watch show the same line; the Debug Console prints the full repr.
    for context in ("hover", "watch"):
        assert seen["h_in"][context] == local["h"]["value"]
    assert seen["h_in"]["repl"].startswith("tensor([[")

    h = seen["h"]
    assert list(h) == [
        "shape", "dtype", "device", "requires_grad", "is_leaf", "grad_fn", "grad", "version",
        "stride", "is_contiguous", "values", "all attributes",
    ]  # fmt: skip
    assert h["shape"]["value"] == "torch.Size([64, 512])" and h["shape"]["evaluateName"] == "h.shape"
    assert h["grad_fn"]["value"] == "AddmmBackward0 · next: AccumulateGrad, None, TBackward0"
    assert h["grad"]["value"] == "None: not kept for a non-leaf (call retain_grad() before backward)"
    assert h["values"]["value"].endswith(", ...] first 10 of 32768")
    attributes = seen["h attributes"]
    assert attributes["imag"]["value"] == "RuntimeError: imag is not implemented for tensors with non-complex dtypes."
    assert {"function variables", "special variables", "_version"} <= set(attributes)
    assert seen["row"]["base (a view of it)"]["value"] == "Tensor[3] float32 cpu = [1, 2, 3]"

    # From the loss down to every leaf.
    assert seen["leaves"] == {
        "AccumulateGrad for Parameter[512, 784] float32 cpu": "Parameter[512, 784] float32 cpu · leaf · requires_grad",
        "AccumulateGrad for Parameter[512] float32 cpu": "Parameter[512] float32 cpu · leaf · requires_grad",
    }
    # A saved tensor packed by a saved_tensors_hooks pack hook is shown as such, never unpacked.
    assert seen["sin"]["saved self"]["value"] == "packed by a saved-tensor hook (not unpacked: that would run the hook)"
    assert seen["unpacked"] == "0"

    placed = seen["placed"][0]
    assert placed["verified"] and seen["after_backward_frame"]["line"] == AFTER_BACKWARD
    local = seen["after_backward"]
    assert local["weight"]["value"] == "Parameter[512, 784] float32 cpu · leaf · requires_grad · grad [512, 784]"
    assert seen["relu"]["value"] == "ReluBackward0 · next: AddmmBackward0 · saved values freed"
    assert seen["relu saved result"]["value"] == "freed by backward"
    assert seen["exit_code"] == 0
    assert "unpacked 0" in seen["output"]


@pytest.mark.xdist_group("current_file_session")  # one worker runs the session they share
def test_optimizer_step_goes_through_torchs_wrapper_a_function_breakpoint_goes_to_sgd_step(current_file_session):
    seen = current_file_session
    assert [placed["verified"] for placed in seen["placed"][1:3]] == [True, True]
    assert seen["step_line_frame"]["line"] == STEP_LINE
    frame = seen["into_step"]
    assert in_torch(frame["source"]["path"], "optim", "optimizer.py") and frame["name"] == "wrapper"

    # "Step Into Target" on the second call lands in the same wrapper.
    assert seen["second_step_line"] == STEP_LINE + 1
    frame = seen["into_step_target"]
    assert in_torch(frame["source"]["path"], "optim", "optimizer.py") and frame["name"] == "wrapper"

    assert seen["placed_step"]["verified"] is True
    assert seen["step_reason"] == "function breakpoint"
    frame = seen["in_sgd_step"]
    assert in_torch(frame["source"]["path"], "optim", "sgd.py") and frame["name"] == "step"
    frame = seen["in_single_tensor_sgd"]
    assert in_torch(frame["source"]["path"], "optim", "sgd.py") and frame["name"] == "_single_tensor_sgd"
    assert seen["exit_code"] == 0
    assert "weight [0.7999999523162842, 0.7999999523162842, 0.7999999523162842]" in seen["output"]


@pytest.mark.xdist_group("current_file_session")  # one worker runs the session they share
def test_unusual_values_and_a_users_own_traces_module(current_file_session):
    """The user's traces.py is never run by the extension, and the program imports its own;
    freed storage, Copy Value, a 10,000-input node, containers and a saved dim of -1."""
    seen = current_file_session
    assert seen["unusual_frame"]["line"] == UNUSUAL_STOP
    local = seen["unusual"]
    assert local["h"]["value"] == "Tensor[3, 4] float32 cpu"
    assert local["freed"]["value"] == "Tensor[4] float32 cpu · storage freed (0 bytes)"
    assert local["large_freed"]["value"] == "Tensor[100] float32 cpu · storage freed (0 bytes)"
    assert seen["large_freed"]["values"]["value"] == "not read: storage freed (0 bytes)"
    assert local["pair"]["value"] == "list[2]: Tensor[3, 4] float32, Tensor[5] float32"

    # Copy Value copies the values (the full repr, as stock debugpy); hover shows the line.
    def evaluate(expression: str, context: str) -> str:
        return seen["evaluated"][expression, context]

    assert evaluate("h", "clipboard") == evaluate("h", "repl")
    assert evaluate("h", "clipboard").startswith("tensor([[") and evaluate("h", "clipboard").count("\n") == 2
    assert evaluate("h", "hover") == "Tensor[3, 4] float32 cpu"
    for context in ("clipboard", "repl"):  # never torch's repr, which would crash the program
        assert evaluate("freed", context) == "Tensor[4] float32 cpu · storage freed (0 bytes)"
        assert evaluate("with_freed", context) == "dict[1]: 'freed': Tensor[4] float32"

    # A node with 10,000 inputs: one capped line, its inputs in pages of 100.
    node = seen["joined node"]
    assert len(node["value"]) <= 200 and node["value"].endswith("more)"), node["value"]
    assert node["value"].startswith("CatBackward0 · next: AccumulateGrad, AccumulateGrad")
    children = seen["joined children"]
    pages = [name for name in children if name.startswith("next_functions")]
    assert len(pages) == 100 and pages[0] == "next_functions[0] … next_functions[99]"
    assert children["saved dim"]["value"] == "0"
    first_page = seen["joined first page"]
    assert len(first_page) == 100
    assert first_page["next_functions[99]"]["value"] == "AccumulateGrad for Tensor[1] float32 cpu = [1]"
    assert seen["last"]["saved dim"]["value"] == "-1"

    assert seen["exit_code"] == 0
    output = seen["output"]
    # Run once, by the program's own import after the stop; the program got its own module.
    assert output.count("the user's traces.py ran") == 1 and "traces is the user's own" in output
    assert output.index("stopped here") < output.index("the user's traces.py ran")


WORKER_SCRIPT = '''\
import torch
from torch.utils.data import DataLoader, Dataset


class Squares(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        item = torch.tensor([float(index)]) ** 2
        return item


if __name__ == "__main__":
    loader = DataLoader(Squares(), batch_size=2, num_workers=1)
    print("batches", [batch.tolist() for batch in loader])
'''
IN_GET_ITEM = WORKER_SCRIPT.splitlines().index("        return item") + 1


def test_a_dataloader_worker_answers_at_once_and_stops_at_its_breakpoints(tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(WORKER_SCRIPT)
    with DebugSession() as session:
        session.initialize()
        launch = session.launch(current_file_configuration(script))
        session.set_breakpoints(str(script), [IN_GET_ITEM])
        session.request("configurationDone")
        session.response(launch)

        worker = session.subprocess_session()  # VSCode opens one for each subprocess
        [placed] = worker.set_breakpoints(str(script), [IN_GET_ITEM])
        worker.request("configurationDone")
        stopped = worker.wait_for_event("stopped")
        frame = worker.top_frame(stopped["body"]["threadId"])
        assert placed["verified"] and (frame["name"], frame["line"]) == ("__getitem__", IN_GET_ITEM)
        assert worker.subprocesses == [] and session.subprocesses[0]["subProcessId"] != session.debuggee_pid
        assert int(worker.evaluate(NODELAY_OF_THE_DEBUGGER_SOCKET, frame["id"])) != 0
        assert worker.local_variables(frame["id"])["item"]["value"] == "Tensor[1] float32 cpu = [0]"

        worker.set_breakpoints(str(script), [])
        worker.request("continue", {"threadId": stopped["body"]["threadId"]})
        assert session.run_to_end() == 0
        assert "batches [[[0.0], [1.0]], [[4.0], [9.0]]]" in session.terminal_output()


# -- F11 with --trace -----------------------------------------------------------------------


USERS_SCRIPT = """\
import torch

w = torch.ones(2, requires_grad=True)
loss = (w * 3).sum()
loss.backward()
print("w.grad", w.grad.tolist())
"""


def stopped_on_users_backward(session: DebugSession, configuration_name: str, folder: Path) -> tuple[Path, int, int]:
    """Launch the named configuration on a small script of the user's (USERS_SCRIPT) and stop on its
    ``loss.backward()`` line, that breakpoint removed again: (the script, that line, the thread)."""
    script = folder / "my_model.py"
    script.write_text(USERS_SCRIPT)
    backward_line = USERS_SCRIPT.splitlines().index("loss.backward()") + 1
    [config] = [c for c in test_launch_configs.CONFIGURATIONS if c["name"] == configuration_name]
    session.initialize()
    session.launch(substitute(config, file=script))
    session.set_breakpoints(str(script), [backward_line])
    session.request("configurationDone")
    thread_id = session.wait_for_event("stopped")["body"]["threadId"]
    session.set_breakpoints(str(script), [])
    return script, backward_line, thread_id


def test_step_in_under_python_m_traces_goes_through_the_backward_watch_into_torch(tmp_path):
    with DebugSession() as session:
        script, backward_line, thread_id = stopped_on_users_backward(session, "Trace current file", tmp_path)
        stops, callers = [], []
        while len(stops) < 400:
            session.request("stepIn", {"threadId": thread_id})
            assert session.wait_for_event("stopped")["body"]["reason"] == "step"
            frame, caller = session.request("stackTrace", {"threadId": thread_id, "startFrame": 0, "levels": 2})["stackFrames"]
            stops.append((frame["source"]["path"], frame["name"]))
            callers.append(caller["source"].get("path", ""))
            if Path(frame["source"]["path"]) == script and frame["line"] > backward_line:
                break
        # Nothing the tracer calls is a stop but the calls it passes on (torch.autograd.backward, and
        # the engine's entry it calls, which the watch wraps too): not contextlib's
        # __enter__/__exit__ of its `with` around that call.
        called_by_tracer = {stop for stop, caller in zip(stops, callers) if "traces" in Path(caller).parts}
        passed_on = {
            (path, name)
            for path, name in called_by_tracer
            if (in_torch(path, "autograd", "__init__.py") and name == "backward")
            or (in_torch(path, "autograd", "graph.py") and name == "_engine_run_backward")
        }
        assert {name for _, name in passed_on} == {"backward", "_engine_run_backward"}
        assert called_by_tracer - passed_on == set()
        assert [stop for stop in stops if Path(stop[0]).name == "contextlib.py"] == []
        # torch.autograd.backward is wrapped by the watch that finds the traced backward; F11
        # goes through the wrapper into torch's own function, and never stops in traces/.
        assert "backward" in {name for source, name in stops if in_torch(source, "autograd", "__init__.py")}
        assert [stop for stop in stops if "traces" in Path(stop[0]).parts] == []
        session.request("continue", {"threadId": thread_id})
        assert session.run_to_end() == 0
        output = session.terminal_output()
        assert "w.grad [3.0, 3.0]" in output and "AccumulateGrad" in output  # the script ran, then the trace


def test_with_the_extension_off_debugpy_is_stock(backward_configuration):
    path, add_line = scenario_line(scenarios.backward.backward_pass, "a = w + x")
    torch_path, torch_line = first_body_line(torch.autograd.backward)
    with DebugSession() as session:
        session.initialize()
        session.launch({**backward_configuration, "env": {STOCK_VARIABLE: "1"}})
        session.set_breakpoints(path, [add_line])
        session.set_breakpoints(torch_path, [torch_line])
        session.request("configurationDone")

        thread_id = session.wait_for_event("stopped")["body"]["threadId"]
        session.request("stepIn", {"threadId": thread_id})
        session.wait_for_event("stopped")
        assert in_torch(session.top_frame(thread_id)["source"]["path"], "_library", "simple_registry.py")

        session.request("continue", {"threadId": thread_id})
        session.wait_for_event("stopped")
        frame = session.top_frame(thread_id)
        assert session.local_variables(frame["id"])["tensors"]["value"] == "tensor(6., grad_fn=<MulBackward0>)"
        assert int(session.evaluate(NODELAY_OF_THE_DEBUGGER_SOCKET, frame["id"])) == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_attach_shows_tensors_and_answers_at_once_too(tmp_path):
    # The README's attach command, with a free port instead of 5678 (tests run side by side).
    script = tmp_path / "attached.py"
    script.write_text("import torch\n\nw = torch.ones(3, requires_grad=True)\ny = w * 2\nprint('attached', y.sum().item())\n")
    [attach] = [config for config in test_launch_configs.PYTHON_CONFIGURATIONS if config["request"] == "attach"]
    port = free_port()
    program = subprocess.Popen(
        [sys.executable, "-m", "debugpy", "--listen", f"127.0.0.1:{port}", "--wait-for-client", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until debugpy listens
            try:
                session = DebugSession(connect=("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline or program.poll() is not None:
                    raise
                time.sleep(0.05)
        with session:
            session.initialize()
            session.send_request("attach", {**attach, "connect": {"host": "127.0.0.1", "port": port}})
            session.wait_for_event("initialized")
            session.set_breakpoints(str(script), [5])
            session.request("configurationDone")
            stopped = session.wait_for_event("stopped")
            frame = session.top_frame(stopped["body"]["threadId"])
            assert session.local_variables(frame["id"])["y"]["value"] == "Tensor[3] float32 cpu = [2, 2, 2] · grad_fn=MulBackward0"
            assert int(session.evaluate(NODELAY_OF_THE_DEBUGGER_SOCKET, frame["id"])) != 0
            session.request("continue", {"threadId": stopped["body"]["threadId"]})
            assert program.wait(60) == 0
        assert b"attached 6.0" in program.stdout.read()
    finally:
        if program.poll() is None:
            os.killpg(program.pid, signal.SIGKILL)
        program.wait()
        program.stdout.close()
