"""Regenerate traces/recorded/: run every scenario with --save-trace.

    .venv/bin/python scenarios/_record.py

The recorded traces let a reader look at a trace without running anything, and
tests/test_recorded_traces.py reruns each scenario and compares.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "traces" / "recorded"

# Options that keep a scenario's recorded run short.
RECORD_OPTIONS: dict[str, list[str]] = {}


def scenario_names() -> list[str]:
    """Every scenario: each module in scenarios/ whose name has no leading underscore."""
    return sorted(p.stem for p in (ROOT / "scenarios").glob("*.py") if not p.stem.startswith("_"))


def record_argv(name: str, directory: Path) -> list[str]:
    return ["--save-trace", str(directory), *RECORD_OPTIONS.get(name, [])]


def main() -> int:
    for name in scenario_names():
        print(f"Recording {name} into {RECORDED.relative_to(ROOT)}/ ...", flush=True)
        command = [sys.executable, f"scenarios/{name}.py", *record_argv(name, RECORDED)]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"scenarios/{name}.py failed:\n{result.stderr}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
