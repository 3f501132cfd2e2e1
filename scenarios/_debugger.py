"""Make the debugger answer at once: TCP_NODELAY on debugpy's socket in this process.

Under debugpy, this process talks to the debug adapter over one TCP socket that
pydevd (debugpy's engine) opens and keeps in ``PyDB.writer.sock`` and
``PyDB.reader.sock``. It leaves Nagle's algorithm on, so a small reply written
in pieces waits for the adapter's delayed acknowledgement: about 40 ms for each
request VSCode sends while paused (threads, stackTrace, scopes, variables, after
every step). ``set_debugger_nodelay`` turns Nagle off on that socket.

It only looks: without a debugger (pydevd not imported) it does nothing and
imports nothing. It never raises; if pydevd's internals are not as expected it
leaves everything as it is. Set STEPTHROUGH_KEEP_NAGLE=1 to turn it off, to
compare.
"""

from __future__ import annotations

import os
import socket
import sys

TURN_OFF_VARIABLE = "STEPTHROUGH_KEEP_NAGLE"


def debugger_sockets() -> list[socket.socket]:
    """The TCP sockets that debugpy uses in this process; empty without a debugger.

    Reads pydevd's internals, so it raises if they change; set_debugger_nodelay guards it.
    """
    pydevd = sys.modules.get("pydevd")  # imported only when debugpy runs this process
    if pydevd is None:
        return []
    py_db = pydevd.get_global_debugger()
    found: dict[int, socket.socket] = {}
    for thread in (getattr(py_db, "writer", None), getattr(py_db, "reader", None)):
        sock = getattr(thread, "sock", None)
        if isinstance(sock, socket.socket) and sock.type == socket.SOCK_STREAM and sock.family in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            found[id(sock)] = sock
    return list(found.values())


def set_debugger_nodelay() -> int:
    """Set TCP_NODELAY on debugpy's sockets in this process; returns how many were set.

    A no-op (returning 0) without a debugger, when STEPTHROUGH_KEEP_NAGLE is set
    to anything but "" or "0", or when anything goes wrong.
    """
    if os.environ.get(TURN_OFF_VARIABLE, "") not in ("", "0"):
        return 0
    count = 0
    try:
        for sock in debugger_sockets():
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                count += 1
            except OSError:
                pass  # a closed socket: nothing to speed up
    except Exception:
        pass  # pydevd changed its internals: stay as fast as debugpy makes it, but never fail
    return count
