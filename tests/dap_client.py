"""A small Debug Adapter Protocol client that drives debugpy the way VSCode does.

``DebugSession`` starts ``python -m debugpy.adapter`` and speaks DAP with it over
stdio: each message is ``Content-Length: N`` + a blank line + N bytes of JSON.
Like VSCode, it answers the adapter's ``runInTerminal`` reverse request by
starting the given command (the debugpy launcher, which starts the program) with
the given cwd and environment, in a "terminal" whose output goes to a file.

Like VSCode, it says it supports the ``startDebugging`` reverse request: for each
subprocess of the program (a DataLoader worker, say) the adapter asks for a new
session, and ``subprocess_session()`` opens it, a second DAP connection to the
adapter over TCP that attaches to that process.

Every wait has a timeout. Leaving the ``with`` block ends the adapter, the
launcher and the debugged program, and reaps what this process started, also
when the block raised.

    with DebugSession() as session:
        session.initialize()
        session.launch(configuration)          # returns once "initialized" arrived
        session.request("setBreakpoints", {...})
        session.request("configurationDone")
        stopped = session.wait_for_event("stopped")
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from typing import IO, Any

TIMEOUT = 120.0  # seconds; importing torch under a debugger on a busy laptop is slow

# What VSCode says about itself in "initialize" (the fields debugpy looks at).
VSCODE_CAPABILITIES = {
    "clientID": "vscode",
    "clientName": "Visual Studio Code",
    "adapterID": "debugpy",
    "pathFormat": "path",
    "linesStartAt1": True,
    "columnsStartAt1": True,
    "supportsVariableType": True,
    "supportsVariablePaging": True,
    "supportsRunInTerminalRequest": True,
    "supportsStartDebuggingRequest": True,
    "supportsProgressReporting": True,
    "supportsInvalidatedEvent": True,
    "supportsMemoryReferences": True,
    "locale": "en",
}


class DapError(Exception):
    """The adapter answered a request with success: false."""


class DebugSession:
    """One debug session with a fresh ``debugpy.adapter`` process (or, given ``connect``,
    one more session with a running adapter, over TCP: see ``subprocess_session``)."""

    def __init__(self, python: str = sys.executable, connect: tuple[str, int] | None = None) -> None:
        self.python = python
        self.messages: list[dict[str, Any]] = []  # everything received, in order
        self.debuggee_pid: int | None = None  # from the adapter's "process" event
        self.terminals: list[subprocess.Popen] = []  # what runInTerminal started
        self._terminal_output: list[IO[bytes]] = []
        self._seq = 0
        self._consumed: set[int] = set()  # indexes into messages, of events already waited for
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()
        self._closed = False
        self._reverse_requests: dict[str, Callable[[dict], dict]] = {
            "runInTerminal": self._run_in_terminal,
            "startDebugging": self._start_debugging,
        }
        self.subprocesses: list[dict[str, Any]] = []  # configurations from startDebugging, in order
        self._children: list[DebugSession] = []
        self.adapter_started_at = time.perf_counter()
        self.adapter: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        if connect is None:
            self.adapter = subprocess.Popen(
                [python, "-m", "debugpy.adapter"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # the adapter writes nothing there in stdio mode
                **_own_process_group(),
            )
            self._input, self._output = self.adapter.stdout, self.adapter.stdin
        else:
            self._socket = socket.create_connection(connect, timeout=TIMEOUT)
            self._socket.settimeout(None)
            self._input, self._output = self._socket.makefile("rb"), self._socket.makefile("wb")
        self._reader = threading.Thread(target=self._read_messages, name="dap-reader", daemon=True)
        self._reader.start()

    # -- the session, step by step, as VSCode does it --------------------------------

    def initialize(self) -> dict[str, Any]:
        """Send "initialize" with VSCode's capabilities; returns the adapter's capabilities."""
        return self.request("initialize", VSCODE_CAPABILITIES)

    def launch(self, configuration: dict[str, Any], timeout: float = TIMEOUT) -> int:
        """Send "launch" and wait for the "initialized" event.

        The adapter answers "launch" only after "configurationDone"; the returned
        request number lets the caller wait for that answer with ``response``.
        """
        seq = self.send_request("launch", {**configuration, "python": [self.python]})
        self.wait_for_event("initialized", timeout)
        return seq

    def subprocess_session(self, timeout: float = TIMEOUT) -> DebugSession:
        """The session for the program's next subprocess, as VSCode opens it: connect to
        the adapter, "initialize", "attach" with the configuration the adapter sent in
        its "startDebugging" request. The caller sets breakpoints and sends
        "configurationDone"; it is closed with this session."""
        self._wait(lambda: len(self.subprocesses) > len(self._children) or None, timeout, "a subprocess")
        configuration = self.subprocesses[len(self._children)]
        connect = configuration["connect"]
        child = DebugSession(self.python, connect=(connect["host"], int(connect["port"])))
        self._children.append(child)
        child.initialize()
        child.send_request("attach", configuration)
        child.wait_for_event("initialized", timeout)
        return child

    def run_to_end(self, timeout: float = TIMEOUT) -> int:
        """Wait until the program has exited; returns its exit code."""
        return self.wait_for_event("exited", timeout)["body"]["exitCode"]

    def set_breakpoints(self, path: str, lines: list[int]) -> list[dict[str, Any]]:
        """Replace the breakpoints in one file; returns what the adapter made of each."""
        breakpoints = [{"line": line} for line in lines]
        return self.request("setBreakpoints", {"source": {"path": path}, "breakpoints": breakpoints})["breakpoints"]

    def top_frame(self, thread_id: int) -> dict[str, Any]:
        return self.request("stackTrace", {"threadId": thread_id, "startFrame": 0, "levels": 1})["stackFrames"][0]

    def local_variables(self, frame_id: int) -> dict[str, dict[str, Any]]:
        """The variables of a frame's "Locals" scope, by name."""
        scopes = self.request("scopes", {"frameId": frame_id})["scopes"]
        local = next(scope for scope in scopes if scope["name"] == "Locals")
        found = self.request("variables", {"variablesReference": local["variablesReference"]})["variables"]
        return {variable["name"]: variable for variable in found}

    def evaluate(self, expression: str, frame_id: int) -> str:
        body = self.request("evaluate", {"expression": expression, "frameId": frame_id, "context": "repl"})
        return body["result"]

    def terminal_output(self) -> str:
        """What the programs started in the "terminal" have printed so far."""
        chunks = []
        for output in self._terminal_output:
            output.seek(0)
            chunks.append(output.read().decode(errors="replace"))
        return "".join(chunks)

    # -- requests, responses, events ------------------------------------------------

    def send_request(self, command: str, arguments: dict[str, Any] | None = None) -> int:
        seq = self._next_seq()
        message = {"seq": seq, "type": "request", "command": command}
        if arguments is not None:
            message["arguments"] = arguments
        self._send(message)
        return seq

    def response(self, seq: int, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Wait for the response to request ``seq``; returns its body, raises DapError on failure."""

        def find():
            for message in self.messages:
                if message.get("type") == "response" and message.get("request_seq") == seq:
                    return message
            return None

        response = self._wait(find, timeout, f"the response to request {seq}")
        if not response.get("success"):
            raise DapError(f"{response.get('command')} failed: {response.get('message')} {response.get('body')}")
        return response.get("body", {})

    def request(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = TIMEOUT) -> dict:
        return self.response(self.send_request(command, arguments), timeout)

    def wait_for_event(self, name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next event called ``name`` that no earlier call returned."""

        def find():
            for index, message in enumerate(self.messages):
                if index not in self._consumed and message.get("type") == "event" and message.get("event") == name:
                    self._consumed.add(index)
                    return message
            return None

        return self._wait(find, timeout, f'the "{name}" event')

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every event called ``name`` received so far, waited for or not."""
        with self._changed:
            return [m for m in self.messages if m.get("type") == "event" and m.get("event") == name]

    def _wait(self, find: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := find()) is None:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    reason = "the adapter closed the connection" if self._closed else f"no answer in {timeout} s"
                    raise TimeoutError(f"waiting for {what}: {reason}; last messages: {self._recent()}")
                self._changed.wait(left)
        return found

    def _recent(self, count: int = 5) -> str:
        return json.dumps(self.messages[-count:])[-2000:]

    # -- the wire ---------------------------------------------------------------------

    def _next_seq(self) -> int:
        with self._write_lock:
            self._seq += 1
            return self._seq

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        with self._write_lock:
            self._output.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self._output.flush()

    def _read_messages(self) -> None:
        stream = self._input
        try:
            while True:
                length = None
                while (line := stream.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if not line or length is None:
                    break
                message = json.loads(stream.read(length))
                if message.get("type") == "request":
                    self._answer_reverse_request(message)
                if message.get("type") == "event" and message.get("event") == "process":
                    self.debuggee_pid = message["body"].get("systemProcessId")
                with self._changed:
                    self.messages.append(message)
                    self._changed.notify_all()
        except (OSError, ValueError):
            pass  # the adapter went away; waiters see _closed below
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()

    def _answer_reverse_request(self, request: dict[str, Any]) -> None:
        handler = self._reverse_requests.get(request["command"])
        response = {"seq": self._next_seq(), "type": "response", "request_seq": request["seq"], "command": request["command"]}
        try:
            if handler is None:
                raise NotImplementedError(f"this client does not handle {request['command']!r}")
            response.update(success=True, body=handler(request.get("arguments", {})))
        except Exception as error:
            response.update(success=False, message=str(error))
        self._send(response)

    def _run_in_terminal(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Start the command as VSCode's terminal would: its cwd, its env on top of ours."""
        env = dict(os.environ)
        for name, value in (arguments.get("env") or {}).items():
            if value is None:
                env.pop(name, None)  # null means: remove the variable
            else:
                env[name] = value
        output = tempfile.TemporaryFile()
        self._terminal_output.append(output)
        terminal = subprocess.Popen(
            arguments["args"],
            cwd=arguments.get("cwd") or None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            **_own_process_group(),
        )
        self.terminals.append(terminal)
        return {"processId": terminal.pid}

    def _start_debugging(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Note the subprocess's configuration; ``subprocess_session`` opens its session."""
        with self._changed:
            self.subprocesses.append(arguments["configuration"])
            self._changed.notify_all()
        return {}

    # -- the end ---------------------------------------------------------------------

    def __enter__(self) -> DebugSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self, timeout: float = 10.0) -> None:
        """End the session, then make sure every process it involved is gone and reaped."""
        for child in self._children:
            child.close(timeout)
        if self._socket is not None:  # a subprocess's session: the adapter and the parent end the rest
            if not self._closed:
                try:
                    self.request("disconnect", {}, timeout=timeout)
                except (DapError, TimeoutError, OSError):
                    pass
            for stream in (self._output, self._input, self._socket):
                try:
                    stream.close()
                except OSError:
                    pass
            self._reader.join(timeout)
            return
        if not self._closed and self.adapter.poll() is None:
            try:
                self.request("disconnect", {"terminateDebuggee": True}, timeout=timeout)
            except (DapError, TimeoutError, OSError):
                pass  # the forceful part below ends what is left
        if self.debuggee_pid is not None:
            _kill_group(self.debuggee_pid)  # the launcher gave the program a process group of its own
        try:
            self.adapter.stdin.close()  # the adapter ends when its client goes away
        except OSError:
            pass
        for process in [*self.terminals, self.adapter]:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait(timeout)
        self._reader.join(timeout)
        self.adapter.stdout.close()
        for output in self._terminal_output:
            output.close()


def first_body_line(function: Callable) -> tuple[str, int]:
    """Where to put a breakpoint that stops as a function starts: its body's first line.

    The file and line of the first statement after the docstring, found in the
    installed source with ``inspect``, so it follows torch from version to version.
    """
    lines, first_line = inspect.getsourcelines(function)
    definition = ast.parse(textwrap.dedent("".join(lines))).body[0]
    body = definition.body
    if ast.get_docstring(definition) is not None:
        body = body[1:]
    return inspect.getsourcefile(function), first_line + body[0].lineno - 1


def _own_process_group() -> dict[str, Any]:
    """Popen arguments that put the child into a process group of its own, where there are groups."""
    return {"start_new_session": True} if os.name == "posix" else {}


def _kill_group(pid: int) -> None:
    """Kill the process group led by ``pid``, or else the process; nothing if it is gone."""
    if os.name == "posix":
        try:
            os.killpg(pid, signal.SIGKILL)
            return
        except OSError:
            pass  # no such group: the process may still be there on its own
    try:
        os.kill(pid, signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
    except OSError:
        pass
