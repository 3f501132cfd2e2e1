"""Regenerate traces/recorded/: run every scenario with --save-trace.

    .venv/bin/python scenarios/_record.py

The recorded traces let a reader look at a trace without running anything, and
tests/test_recorded_traces.py reruns each scenario and compares.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from scenarios._fashion import STANDIN_FOLDER, ensure_standin

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "traces" / "recorded"

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


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        # Make the stand-in data first, so that no trace records its making.
        ensure_standin(work / "data" / STANDIN_FOLDER)
        for name in scenario_names():
            print(f"Recording {name} into {RECORDED.relative_to(ROOT)}/ ...", flush=True)
            command = [sys.executable, f"scenarios/{name}.py", *record_argv(name, RECORDED, work / "data", work)]
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"scenarios/{name}.py failed:\n{result.stderr}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
