"""How fast the debugger answers while paused in torch, with and without TCP_NODELAY.

Starts the backward scenario's launch configuration twice through the real
debugpy adapter, driven like VSCode (tests/dap_client.py): once as it is (the
debugger extension sets TCP_NODELAY on the debugger's socket, pydevd_plugins/) and
once with STEPTHROUGH_KEEP_NAGLE=1 (Nagle's algorithm left on). Paused at the
first line of torch.autograd.backward, it sends each of the requests VSCode
sends after every step (threads, stackTrace, scopes, variables) many times and
prints the median round trip in milliseconds.

    .venv/bin/python benchmarks/debugger_requests.py [--repeat N]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the DAP client lives with the tests that use it

from _options import OptionParser, output_file, whole_number  # noqa: E402  (no torch: checked at once)


def build_parser() -> OptionParser:
    """The options, each checked before torch loads and before anything is measured."""
    parser = OptionParser(prog="benchmarks/debugger_requests.py", description=__doc__)
    parser.add_argument(
        "--repeat", type=whole_number(1, 10_000), default=30, metavar="N", help="requests of each kind (default: 30)"
    )
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # a bad value: one line and status 2 now, not after seconds of imports

import torch  # noqa: E402

from dap_client import DebugSession, first_body_line  # noqa: E402
from pydevd_plugins.extensions.stepthrough_session import KEEP_NAGLE_VARIABLE as TURN_OFF_VARIABLE  # noqa: E402
from vscode_files import scenario_configuration, substitute  # noqa: E402

NODELAY_OF_THE_DEBUGGER_SOCKET = (
    "__import__('pydevd').get_global_debugger().writer.sock"
    ".getsockopt(__import__('socket').IPPROTO_TCP, __import__('socket').TCP_NODELAY)"
)


def round_trips(env: dict[str, str | None], repeat: int) -> tuple[str, dict[str, float]]:
    """Pause in torch.autograd.backward; the TCP_NODELAY value and the median ms per request."""
    path, line = first_body_line(torch.autograd.backward)
    configuration = substitute(scenario_configuration("backward"))
    with DebugSession() as session:
        session.initialize()
        session.launch({**configuration, "env": env})
        session.set_breakpoints(path, [line])
        session.request("configurationDone")
        thread_id = session.wait_for_event("stopped")["body"]["threadId"]
        medians = paused_round_trips(session, thread_id, repeat)
        nodelay = session.evaluate(NODELAY_OF_THE_DEBUGGER_SOCKET, session.top_frame(thread_id)["id"])
    return nodelay, medians


def paused_round_trips(session: DebugSession, thread_id: int, repeat: int) -> dict[str, float]:
    """In a session paused on ``thread_id``: the median ms of each request VSCode sends after a step."""
    frame_id = session.top_frame(thread_id)["id"]
    scopes = session.request("scopes", {"frameId": frame_id})["scopes"]
    requests = {
        "threads": None,
        "stackTrace": {"threadId": thread_id, "startFrame": 0, "levels": 20},
        "scopes": {"frameId": frame_id},
        "variables": {"variablesReference": scopes[0]["variablesReference"]},
    }
    medians = {}
    for command, arguments in requests.items():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            session.request(command, arguments, timeout=30)
            times.append((time.perf_counter() - started) * 1000)
        medians[command] = statistics.median(times)
    return medians


def main() -> int:
    repeat = build_parser().parse_args().repeat

    results = {
        "with TCP_NODELAY (as shipped)": round_trips({TURN_OFF_VARIABLE: None}, repeat),  # None: unset
        f"without ({TURN_OFF_VARIABLE}=1)": round_trips({TURN_OFF_VARIABLE: "1"}, repeat),
    }
    commands = ["threads", "stackTrace", "scopes", "variables"]
    print(f"median round trip in ms while paused in torch.autograd.backward, {repeat} requests each")
    print(f"{'':34}" + "".join(f"{command:>12}" for command in commands) + "  TCP_NODELAY")
    for label, (nodelay, medians) in results.items():
        print(f"{label:34}" + "".join(f"{medians[command]:12.2f}" for command in commands) + f"  {nodelay}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
