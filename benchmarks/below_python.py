"""What --trace costs on the backward scenario, without and with --native (README "Below Python").

    .venv/bin/python benchmarks/below_python.py [--runs N] [--output FILE]

Runs `scenarios/backward.py` plain, with `--trace` and with `--trace --native`,
taking turns within each of N rounds (default 5), and reports the medians and
their ratios to the plain run. The formula index is cached before the rounds
(one untimed --trace run), as it is after the first run of a torch version;
that first run is timed separately, with an empty cache folder, since it
builds the index. The target: --trace within 1.2x of the plain run.
"""

from __future__ import annotations

import argparse
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

from traces.files import write_atomically  # noqa: E402

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


def measure(runs: int) -> dict:
    wall_time(COMMANDS["--trace"])  # caches the index, if it is not cached yet
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for round_number in range(runs):
        for label, argv in COMMANDS.items():
            times[label].append(wall_time(argv))
        print(f"  round {round_number + 1}/{runs} done", flush=True)
    medians = {label: statistics.median(values) for label, values in times.items()}
    with tempfile.TemporaryDirectory() as empty:
        cold = wall_time(COMMANDS["--trace"], env={**os.environ, "TORCH_STEPTHROUGH_CACHE": empty})
    return {
        "runs": runs,
        "seconds": medians,
        "ratio_to_plain": {label: medians[label] / medians["plain"] for label in COMMANDS},
        "trace_with_an_empty_cache_s": cold,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cores": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--output", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    figures = measure(args.runs)
    print(f"scenarios/backward.py, median of {args.runs} (load average {figures['load_average']}, {figures['cores']} cores):")
    for label, seconds in figures["seconds"].items():
        print(f"  {label:<18} {seconds:6.2f} s  {figures['ratio_to_plain'][label]:.2f}x")
    print(f"  --trace, empty cache {figures['trace_with_an_empty_cache_s']:.2f} s (builds the index, once per torch version)")
    ratio = figures["ratio_to_plain"]["--trace"]
    print(f"target --trace / plain <= {TARGET}: {ratio:.2f} {'met' if ratio <= TARGET else 'MISSED'}")
    if args.output:
        write_atomically(args.output, json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
