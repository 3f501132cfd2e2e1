"""What --trace costs on the backward scenario, without and with --native (docs/benchmarks.md, "Below Python").

    .venv/bin/python benchmarks/below_python.py [--runs N] [--output FILE] [--quick]

Runs `scenarios/backward.py` plain, with `--trace` and with `--trace --native`,
taking turns within each of N rounds (default 5), and reports the medians and
their ratios to the plain run. The formula index is cached before the rounds
(one untimed --trace run), as it is after the first run of a torch version;
that first run is timed separately, with an empty cache folder, since it
builds the index. The target: --trace within 1.2x of the plain run.
--quick runs one round and skips the run with an empty cache (pytest runs it
that way, to keep this script working).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _options import OptionParser, output_file, whole_number  # noqa: E402  (no torch: checked at once)


def build_parser() -> OptionParser:
    """The options, each checked before torch loads and before anything is measured."""
    parser = OptionParser(prog="benchmarks/below_python.py", description=__doc__)
    parser.add_argument("--runs", type=whole_number(1, 1000), default=5, metavar="N", help="rounds (default 5)")
    parser.add_argument("--output", type=output_file, metavar="FILE", help="also write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="one round, no run with an empty cache")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # a bad value: one line and status 2 now, not after seconds of imports

from traces.basics.saving import write_atomically  # noqa: E402

SCENARIO = [sys.executable, "scenarios/backward.py"]
COMMANDS = {
    "plain": SCENARIO,
    "--trace": [*SCENARIO, "--trace"],
    "--trace --native": [*SCENARIO, "--trace", "--native"],
}
TARGET = 1.2  # --trace / plain, with a cached index


def wall_time(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    process = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:])} failed with status {process.returncode}: {process.stderr[-500:]}")
    return time.perf_counter() - started


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def measure(runs: int, quick: bool = False) -> dict:
    load_before = load_average()
    if not quick:
        wall_time(COMMANDS["--trace"])  # caches the index, if it is not cached yet
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for round_number in range(runs):
        for label, argv in COMMANDS.items():
            times[label].append(wall_time(argv))
        print(f"  round {round_number + 1}/{runs} done", flush=True)
    medians = {label: statistics.median(values) for label, values in times.items()}
    cold = None
    if not quick:
        with tempfile.TemporaryDirectory() as empty:
            cold = wall_time(COMMANDS["--trace"], env={**os.environ, "TORCH_STEPTHROUGH_CACHE": empty})
    return {
        "runs": runs,
        "seconds": medians,
        "ratio_to_plain": {label: medians[label] / medians["plain"] for label in COMMANDS},
        "trace_with_an_empty_cache_s": cold,
        "load_average": {"before": load_before, "after": load_average()},
        "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = 1 if args.quick else args.runs
    figures = measure(runs, args.quick)
    load = {when: "n/a" if value is None else f"{value:.1f}" for when, value in figures["load_average"].items()}
    print(f"scenarios/backward.py, median of {runs} on {figures['cores']} cores (load average {load['before']} before, {load['after']} after):")
    for label, seconds in figures["seconds"].items():
        print(f"  {label:<22} {seconds:6.2f} s  {figures['ratio_to_plain'][label]:.2f}x")
    if figures["trace_with_an_empty_cache_s"] is not None:
        cold = figures["trace_with_an_empty_cache_s"]
        print(f"  {'--trace, empty cache':<22} {cold:6.2f} s  {cold / figures['seconds']['plain']:.2f}x (builds the index, once per torch version)")
    ratio = figures["ratio_to_plain"]["--trace"]
    print(f"target --trace / plain <= {TARGET}: {ratio:.2f} {'met' if ratio <= TARGET else 'MISSED'}")
    if args.output:
        write_atomically(args.output, json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
