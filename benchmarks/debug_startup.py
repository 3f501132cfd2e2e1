"""How long F5 takes to reach a breakpoint in torch, against a plain run of the scenario.

Runs, in one process and alternating, N times each:
- a plain run: `python scenarios/backward.py --trace`, start to exit;
- a debug session driven like VSCode (tests/dap_client.py) with the scenario's
  launch configuration: from starting the adapter to the "stopped" event at
  the first line of torch.autograd.backward, and on to the program's exit
  once the breakpoint is removed and the program continued.
Prints each measurement and the medians, in seconds.

    .venv/bin/python benchmarks/debug_startup.py [--runs N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the DAP client lives with the tests that use it

from _options import OptionParser, output_file, whole_number  # noqa: E402  (no torch: checked at once)


def build_parser() -> OptionParser:
    """The options, each checked before torch loads and before anything is measured."""
    parser = OptionParser(prog="benchmarks/debug_startup.py", description=__doc__)
    parser.add_argument("--runs", type=whole_number(1, 1000), default=5, metavar="N", help="rounds (default 5)")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # a bad value: one line and status 2 now, not after seconds of imports

import torch  # noqa: E402

from dap_client import DebugSession, first_body_line  # noqa: E402
from vscode_files import scenario_configuration, substitute  # noqa: E402


def plain_run() -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "scenarios/backward.py", "--trace"], cwd=ROOT, check=True, capture_output=True, timeout=300
    )
    return time.perf_counter() - started


def debug_run(while_paused: Callable[[DebugSession, int], object] | None = None) -> tuple[float, float]:
    """Seconds from starting the adapter to the stop in torch, and to the program's exit.

    ``while_paused(session, thread_id)``, if given, runs at the stop (benchmarks/run.py --quick
    measures the requests there, to start one debug session instead of two); its time is
    part of the time to exit.
    """
    path, line = first_body_line(torch.autograd.backward)
    with DebugSession() as session:
        session.initialize()
        session.launch(substitute(scenario_configuration("backward")))
        session.set_breakpoints(path, [line])
        session.request("configurationDone")
        stopped = session.wait_for_event("stopped")
        to_stop = time.perf_counter() - session.adapter_started_at
        if while_paused is not None:
            while_paused(session, stopped["body"]["threadId"])
        session.set_breakpoints(path, [])
        session.request("continue", {"threadId": stopped["body"]["threadId"]})
        if session.run_to_end() != 0:
            raise RuntimeError(f"the scenario failed under the debugger:\n{session.terminal_output()}")
        to_exit = time.perf_counter() - session.adapter_started_at
    return to_stop, to_exit


def main() -> int:
    runs = build_parser().parse_args().runs

    plain, to_stop, to_exit = [], [], []
    for run in range(1, runs + 1):
        plain.append(plain_run())
        stop, exit_ = debug_run()
        to_stop.append(stop)
        to_exit.append(exit_)
        print(f"run {run}: plain run {plain[-1]:.2f} s; debugger: stop in torch {stop:.2f} s, exit {exit_:.2f} s")
    print(f"median of {runs} runs, in seconds:")
    print(f"  plain run, start to exit:                           {statistics.median(plain):.2f}")
    print(f"  debugger, adapter start to stop in torch:           {statistics.median(to_stop):.2f}")
    print(f"  debugger, adapter start to exit (after continuing): {statistics.median(to_exit):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
