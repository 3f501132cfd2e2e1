"""set_debugger_nodelay: TCP_NODELAY on debugpy's socket, and nothing else, never an error.

Under a real debugger it is proven end to end in test_debug_session.py. Here a
stand-in for pydevd's module holds a real TCP connection where pydevd keeps its
socket (PyDB.writer.sock and PyDB.reader.sock), to pin down every other case.
"""

import socket
import sys
from types import ModuleType, SimpleNamespace

import pytest

from scenarios._debugger import TURN_OFF_VARIABLE, debugger_sockets, set_debugger_nodelay


@pytest.fixture
def tcp_connection():
    """Both ends of a TCP connection on 127.0.0.1, with Nagle's algorithm on."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname(), timeout=10)
        accepted, _ = server.accept()
    with client, accepted:
        yield client, accepted


def nodelay(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def pretend_pydevd(monkeypatch, get_global_debugger) -> None:
    """Put a stand-in for pydevd's module where debugpy puts the real one."""
    module = ModuleType("pydevd")
    module.get_global_debugger = get_global_debugger
    monkeypatch.setitem(sys.modules, "pydevd", module)


def debugger_with(sock) -> SimpleNamespace:
    """A stand-in for pydevd's PyDB whose reader and writer threads share ``sock``."""
    return SimpleNamespace(writer=SimpleNamespace(sock=sock), reader=SimpleNamespace(sock=sock))


@pytest.fixture(autouse=True)
def no_debugger_and_not_turned_off(monkeypatch):
    # Also when these tests themselves run under the debugger ("Debug Test").
    monkeypatch.delitem(sys.modules, "pydevd", raising=False)
    monkeypatch.delenv(TURN_OFF_VARIABLE, raising=False)


def test_without_a_debugger_it_does_nothing_and_imports_nothing():
    assert set_debugger_nodelay() == 0
    assert debugger_sockets() == []
    assert "pydevd" not in sys.modules


def test_under_a_debugger_it_sets_nodelay_on_its_socket_once(monkeypatch, tcp_connection):
    debuggee_end, adapter_end = tcp_connection
    pretend_pydevd(monkeypatch, lambda: debugger_with(debuggee_end))
    assert not nodelay(debuggee_end)
    assert set_debugger_nodelay() == 1  # reader and writer share one socket
    assert nodelay(debuggee_end)
    assert not nodelay(adapter_end)  # the other end belongs to the adapter's process


@pytest.mark.parametrize("value, sets", [("1", 0), ("yes", 0), ("0", 1), ("", 1)])
def test_the_variable_turns_it_off(monkeypatch, tcp_connection, value, sets):
    debuggee_end, _ = tcp_connection
    pretend_pydevd(monkeypatch, lambda: debugger_with(debuggee_end))
    monkeypatch.setenv(TURN_OFF_VARIABLE, value)
    assert set_debugger_nodelay() == sets
    assert nodelay(debuggee_end) == bool(sets)


def test_pydevd_imported_but_no_debugger_running(monkeypatch):
    pretend_pydevd(monkeypatch, lambda: None)
    assert set_debugger_nodelay() == 0


def broken_get_global_debugger():
    raise RuntimeError("pydevd changed")


@pytest.mark.parametrize(
    "get_global_debugger",
    [
        broken_get_global_debugger,
        lambda: SimpleNamespace(),  # no reader or writer
        lambda: debugger_with(None),  # threads without a socket
        lambda: debugger_with("not a socket"),
    ],
    ids=["raises", "no threads", "no socket", "not a socket"],
)
def test_unexpected_internals_change_nothing_and_raise_nothing(monkeypatch, get_global_debugger):
    pretend_pydevd(monkeypatch, get_global_debugger)
    assert set_debugger_nodelay() == 0


def test_a_pydevd_module_without_get_global_debugger_changes_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydevd", ModuleType("pydevd"))
    assert set_debugger_nodelay() == 0


def test_a_closed_socket_is_skipped(monkeypatch, tcp_connection):
    debuggee_end, _ = tcp_connection
    debuggee_end.close()
    pretend_pydevd(monkeypatch, lambda: debugger_with(debuggee_end))
    assert set_debugger_nodelay() == 0


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets here")
def test_a_socket_that_is_not_tcp_is_left_alone(monkeypatch):
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        pretend_pydevd(monkeypatch, lambda: debugger_with(left))
        assert set_debugger_nodelay() == 0
