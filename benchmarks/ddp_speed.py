"""What the data-parallel lesson costs: 2 ranks against 1, and --trace on each rank.

Runs `python scenarios/ddp.py` whole (launcher, ranks, exit), alternating, N times each:
- `--ranks 1`: one process does the lesson alone (a world of one);
- `--ranks 2`: two processes, each on half the batch, all-reducing their gradients;
- `--ranks 2 --trace`: the same, each rank recording and printing its trace.
Every run includes the lesson's 2-second wait for the rank that skips its backward
(scenarios/ddp.py SKIP_TIMEOUT), on one rank or more. Prints each median and the ratios.

    .venv/bin/python benchmarks/ddp_speed.py [--runs N]
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

import statistics
import subprocess
import sys
import time
from pathlib import Path

from scenarios._ctrl_c import INTERRUPTED, hand_back
from _options import OptionParser, whole_number  # no torch: this script only starts others

ROOT = Path(__file__).resolve().parent.parent
PROG = "benchmarks/ddp_speed.py"
RUNS = {
    "1 rank": ["--ranks", "1"],
    "2 ranks": ["--ranks", "2"],
    "2 ranks --trace": ["--ranks", "2", "--trace"],
}


def wall_time(options: list[str]) -> float:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "scenarios/ddp.py", *options], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if run.returncode != 0:
        last_line = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"scenarios/ddp.py {' '.join(options)} failed with status {run.returncode}: {last_line}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    hand_back()
    parser = OptionParser(prog=PROG, description=__doc__)
    parser.add_argument("--runs", type=whole_number(1, 100), default=3, metavar="N", help="runs of each (default 3)")
    args = parser.parse_args(argv)
    try:
        times: dict[str, list[float]] = {label: [] for label in RUNS}
        for round_number in range(args.runs):
            for label, options in RUNS.items():
                times[label].append(wall_time(options))
            print(f"  round {round_number + 1}/{args.runs} done", flush=True)
    except RuntimeError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (Ctrl-C); nothing was measured", file=sys.stderr)
        return INTERRUPTED
    median = {label: statistics.median(values) for label, values in times.items()}
    for label, seconds in median.items():
        print(f"{label:>16}: {seconds:6.2f} s (median of {args.runs})")
    print(f"2 ranks / 1 rank:          {median['2 ranks'] / median['1 rank']:.2f}x")
    print(f"--trace on 2 ranks / none: {median['2 ranks --trace'] / median['2 ranks']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
