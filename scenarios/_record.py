"""Regenerate traces/recorded/: run every scenario (or those named) with --save-trace.

    .venv/bin/python scenarios/_record.py [NAME ...] [--into DIR]

The recorded traces let a reader look at a trace without running anything, and
tests/test_recorded_traces.py reruns each scenario and compares. Each scenario
runs in a scratch folder with relative paths for its data and model, so that
no path of this machine ends up in a trace (traces/basics/paths.py does the rest).
Each scenario's set of files is replaced whole, or not at all.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from scenarios._ctrl_c import INTERRUPTED, hand_back
from scenarios._fashion import STANDIN_FOLDER, ensure_standin
from scenarios._runner import ScenarioParser, output_folder

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "traces" / "recorded"
PROG = "scenarios/_record.py"

# The scenarios that train on FashionMNIST (or its stand-in) and take --data.
DATA_SCENARIOS = ("training_step", "quickstart")


def scenario_names() -> list[str]:
    """Every scenario: each module in scenarios/ whose name has no leading underscore."""
    return sorted(p.stem for p in (ROOT / "scenarios").glob("*.py") if not p.stem.startswith("_"))


def quick_options(name: str, data: Path, work: Path) -> list[str]:
    """Options that keep a scenario's run short and its files out of the repository:
    the data from ``data``, the model saved into ``work``."""
    options = []
    if name in DATA_SCENARIOS:
        options += ["--data", str(data)]
    if name == "quickstart":
        options += ["--epochs", "1", "--limit", "256", "--model", str(work / "model.pth")]
    return options


def record_argv(name: str, directory: Path, data: Path, work: Path) -> list[str]:
    return ["--save-trace", str(directory), *quick_options(name, data, work)]


def scenario_name(text: str) -> str:
    names = scenario_names()
    if text not in names:
        raise argparse.ArgumentTypeError(f"{text!r} is not a scenario (scenarios: {', '.join(names)})")
    return text


def build_parser() -> ScenarioParser:
    parser = ScenarioParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "names", nargs="*", type=scenario_name, metavar="NAME", help="scenarios to record (default: all of them)"
    )
    parser.add_argument(
        "--into",
        type=output_folder,
        default=RECORDED,
        metavar="DIR",
        help=f"where to write the traces (default: {RECORDED.relative_to(ROOT)})",
    )
    return parser


def shown(folder: Path) -> str:
    """A folder as the user would type it: relative to the repository when it is inside."""
    folder = folder.resolve()
    return str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder)


def record(names: list[str], into: Path) -> int:
    """Record each scenario into ``into``; returns the exit status."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        # Make the stand-in data first, so that no trace records its making.
        ensure_standin(work / "data" / STANDIN_FOLDER)
        for name in names:
            print(f"Recording {name} into {shown(into)}/ ...", flush=True)
            script = ROOT / "scenarios" / f"{name}.py"
            argv = record_argv(name, into.resolve(), Path("data"), Path("."))  # relative to the scratch folder
            result = subprocess.run([sys.executable, str(script), *argv], cwd=work, capture_output=True, text=True)
            if result.returncode == INTERRUPTED:
                raise KeyboardInterrupt
            if result.returncode != 0:
                last_line = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
                print(f"{PROG}: error: scenarios/{name}.py failed: {last_line}", file=sys.stderr)
                return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        hand_back()  # from here on, Ctrl-C raises KeyboardInterrupt, caught below
        args = build_parser().parse_args(argv)
        from traces.render.picture import NO_DOT, dot_available

        if not dot_available():
            print(f"{PROG}: error: {NO_DOT}; the recorded traces need their pictures", file=sys.stderr)
            return 1
        return record(args.names or scenario_names(), args.into)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (Ctrl-C); the traces recorded so far are whole", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
