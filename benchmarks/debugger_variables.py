"""How fast the Variables pane fills while paused, with the debugger extension and without it.

Debugs a small program of the user's own under "Current file (into torch)",
driven like VSCode (tests/dap_client.py). Its main frame holds a (512, 784) and a
(4096, 4096) tensor; a DataLoader worker (num_workers=1) stops in its dataset's
``__getitem__``. Paused in each, it sends the requests VSCode sends after every
step many times and prints the median round trip in milliseconds (and the very
first ``variables`` request's, which loads what the pane needs), and how many
children each tensor expands to. Four runs, one after the other:

- the extension as shipped (pydevd_plugins/);
- the extension with STEPTHROUGH_KEEP_NAGLE=1 (everything but TCP_NODELAY);
- stock debugpy: STEPTHROUGH_STOCK_DEBUGGER=1 turns the extension off;
- stock debugpy with TCP_NODELAY set by hand in each paused process (an
  "evaluate" request), to see what the stock Variables pane costs by itself.

    .venv/bin/python benchmarks/debugger_variables.py [--repeat N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the DAP client lives with the tests that use it

from _options import OptionParser, output_file, whole_number  # noqa: E402  (no torch: checked at once)


def build_parser() -> OptionParser:
    """The options, each checked before torch loads and before anything is measured."""
    parser = OptionParser(prog="benchmarks/debugger_variables.py", description=__doc__)
    parser.add_argument(
        "--repeat", type=whole_number(1, 10_000), default=30, metavar="N", help="requests of each kind (default: 30)"
    )
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # a bad value: one line and status 2 now, not after seconds of imports

from dap_client import DebugSession  # noqa: E402
from pydevd_plugins.extensions.stepthrough_session import KEEP_NAGLE_VARIABLE, STOCK_VARIABLE  # noqa: E402
from vscode_files import launch_configurations, substitute  # noqa: E402

PROGRAM = '''\
import torch
from torch.utils.data import DataLoader, Dataset


class Rows(Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return 2

    def __getitem__(self, index):
        row = self.data[index]
        return row  # WORKER


if __name__ == "__main__":
    weight = torch.randn(512, 784, requires_grad=True)
    big = torch.randn(4096, 4096)
    loader = DataLoader(Rows(weight.detach()), batch_size=2, num_workers=1)
    print("paused")  # MAIN
    print([batch.shape for batch in loader])
'''
# label: (environment, set TCP_NODELAY by hand); None in the environment: unset
RUNS = {
    "extension (as shipped)": ({STOCK_VARIABLE: None, KEEP_NAGLE_VARIABLE: None}, False),
    f"extension, {KEEP_NAGLE_VARIABLE}=1": ({STOCK_VARIABLE: None, KEEP_NAGLE_VARIABLE: "1"}, False),
    f"stock ({STOCK_VARIABLE}=1)": ({STOCK_VARIABLE: "1", KEEP_NAGLE_VARIABLE: None}, False),
    "stock, TCP_NODELAY by hand": ({STOCK_VARIABLE: "1", KEEP_NAGLE_VARIABLE: None}, True),
}
SET_NODELAY = (
    "__import__('pydevd').get_global_debugger().writer.sock"
    ".setsockopt(__import__('socket').IPPROTO_TCP, __import__('socket').TCP_NODELAY, 1)"
)


def line_of(marker: str) -> int:
    return next(number for number, line in enumerate(PROGRAM.splitlines(), 1) if line.endswith(f"# {marker}"))


def median_ms(session: DebugSession, command: str, arguments: dict, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        session.request(command, arguments, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def paused_figures(
    session: DebugSession, thread_id: int, repeat: int, tensors: list[str], set_nodelay: bool
) -> dict[str, float]:
    frame = session.top_frame(thread_id)
    if set_nodelay:
        session.evaluate(SET_NODELAY, frame["id"])
    [local] = [s for s in session.request("scopes", {"frameId": frame["id"]})["scopes"] if s["name"] == "Locals"]
    figures = {
        # The first, alone: it pays for whatever the extension loads on the first tensor shown.
        "first variables": median_ms(session, "variables", {"variablesReference": local["variablesReference"]}, 1),
        "stackTrace": median_ms(session, "stackTrace", {"threadId": thread_id, "startFrame": 0, "levels": 20}, repeat),
        "variables": median_ms(session, "variables", {"variablesReference": local["variablesReference"]}, repeat),
    }
    found = session.request("variables", {"variablesReference": local["variablesReference"]})["variables"]
    for variable in found:
        if variable["name"] in tensors:
            children = session.request("variables", {"variablesReference": variable["variablesReference"]})
            figures[f"children of {variable['name']}"] = len(children["variables"])
    return figures


def measure(env: dict[str, str | None], set_nodelay: bool, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder, "program.py")
        script.write_text(PROGRAM)
        [config] = [c for c in launch_configurations() if "debug-in-terminal" in c.get("purpose", [])]
        with DebugSession() as session:
            session.initialize()
            launch = session.launch({**substitute(config, file=script), "env": env})
            session.set_breakpoints(str(script), [line_of("MAIN")])
            session.request("configurationDone")
            session.response(launch)
            thread_id = session.wait_for_event("stopped")["body"]["threadId"]
            main = paused_figures(session, thread_id, repeat, ["weight", "big"], set_nodelay)
            session.request("continue", {"threadId": thread_id})

            worker = session.subprocess_session()
            worker.set_breakpoints(str(script), [line_of("WORKER")])
            worker.request("configurationDone")
            worker_thread = worker.wait_for_event("stopped")["body"]["threadId"]
            in_worker = paused_figures(worker, worker_thread, repeat, ["row"], set_nodelay)
    return {**{f"main {key}": value for key, value in main.items()}, **{f"worker {key}": v for key, v in in_worker.items()}}


def main(argv: list[str] | None = None) -> int:
    repeat = build_parser().parse_args(argv).repeat
    results = {label: measure(env, by_hand, repeat) for label, (env, by_hand) in RUNS.items()}
    rows = list(next(iter(results.values())))
    print(f"median round trip in ms ({repeat} requests each) and children per tensor")
    width = max(len(label) for label in results) + 2
    print(f"{'':26}" + "".join(f"{label:>{width}}" for label in results))
    for row in rows:
        cells = "".join(f"{figures.get(row, float('nan')):{width}.2f}" for figures in results.values())
        print(f"{row:26}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
