"""TCP_NODELAY on debugpy's socket: set on every connection pydevd makes, on nothing
else, never an error.

Under a real debugger (the program, a DataLoader worker, "Debug Test") it is proven
end to end in test_debug_session.py. Here a real TCP connection stands in for
pydevd's socket, and a small class for pydevd's PyDB.
"""

import socket

import pytest

from pydevd_plugins.extensions.stepthrough_session import KEEP_NAGLE_VARIABLE, answer_at_once, set_nodelay


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


@pytest.fixture(autouse=True)
def not_turned_off(monkeypatch):
    monkeypatch.delenv(KEEP_NAGLE_VARIABLE, raising=False)


class PyDB:
    """What answer_at_once relies on in pydevd's PyDB: initialize_network(sock, ...)."""

    def initialize_network(self, sock, terminate_on_socket_close=True):
        self.connected = (sock, nodelay(sock), terminate_on_socket_close)
        return "started"


def test_every_connection_gets_nodelay_before_pydevd_starts_talking(monkeypatch, tcp_connection):
    debuggee_end, adapter_end = tcp_connection
    monkeypatch.setattr(PyDB, "initialize_network", PyDB.initialize_network)  # undone after the test
    answer_at_once(PyDB)
    answer_at_once(PyDB)  # a second time changes nothing
    py_db = PyDB()
    assert py_db.initialize_network(debuggee_end, terminate_on_socket_close=False) == "started"
    assert py_db.connected == (debuggee_end, True, False)
    assert PyDB.initialize_network.__wrapped__.__qualname__ == "PyDB.initialize_network"
    assert not nodelay(adapter_end)  # the other end belongs to the adapter's process


@pytest.mark.parametrize("value, sets", [("1", False), ("yes", False), ("0", True), ("", True)])
def test_the_variable_turns_it_off(monkeypatch, tcp_connection, value, sets):
    debuggee_end, _ = tcp_connection
    monkeypatch.setenv(KEEP_NAGLE_VARIABLE, value)
    assert set_nodelay(debuggee_end) is sets
    assert nodelay(debuggee_end) is sets


def test_a_closed_socket_is_skipped(tcp_connection):
    debuggee_end, _ = tcp_connection
    debuggee_end.close()
    assert set_nodelay(debuggee_end) is False


@pytest.mark.parametrize("sock", [None, "not a socket"])
def test_anything_but_a_socket_is_left_alone(sock):
    assert set_nodelay(sock) is False


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets here")
def test_a_socket_that_is_not_tcp_is_left_alone():
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert set_nodelay(left) is False
