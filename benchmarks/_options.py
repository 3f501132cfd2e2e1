"""The benchmarks' options, checked before torch loads: a bad value is one line and status 2 at once.

The scenarios' command lines have the same checks (``scenarios/_runner.py``),
but that module imports torch, which takes seconds; a benchmark parses its
options with these first, before its own heavy imports.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from pathlib import Path


class OptionParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d+$")  # "--runs -1" reaches the check, not "expected one argument"

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """A whole number from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small; it must be {minimum} or more")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is too large; it must be at most {maximum}")
        return value

    return parse


def output_file(text: str) -> Path:
    """A file to write, in a folder that exists and can be written now (checked before the measuring)."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty; give a file name")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {str(folder)!r}: permission denied")
    return path
