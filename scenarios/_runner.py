"""The command line every scenario shares: --trace, --save-trace, --device, --seed.

A scenario's ``__main__`` block calls ``run_scenario``, which parses the
arguments, runs the lesson function, prints the narrative and, when asked,
the trace. A bad argument prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from traces import NO_TRACE, Tracer

SHARED_OPTIONS = {"trace", "save_trace", "native", "device", "seed"}


class ScenarioParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def accelerator_type() -> str | None:
    """The type of the accelerator in use on this machine ("cuda", "mps", ...), if any."""
    if torch.accelerator.is_available():
        return torch.accelerator.current_accelerator().type
    return None


def parse_device(text: str) -> str:
    """Turn --device's value into a device that exists here, or explain why not."""
    if text == "auto":
        return accelerator_type() or "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device name (try auto, cpu or cuda)") from None
    if device.type == "cpu":
        return str(device)
    if device.type != accelerator_type():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not available on this machine (available: {accelerator_type() or 'cpu only'})"
        )
    if device.index is not None and device.index >= torch.accelerator.device_count():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not available: this machine has {torch.accelerator.device_count()} {device.type} device(s)"
        )
    return str(device)


# Argument types for the scenarios' options: each turns the text into a value or
# explains, in one line, why it cannot.


def whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small; it must be {minimum} or more")
        return value

    return parse


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def folder(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return path


class ScenarioError(Exception):
    """A problem the user can fix (missing or damaged data, say); the message says how, in one line."""


def build_parser(name: str, doc: str | None, add_options: Callable | None = None) -> ScenarioParser:
    parser = ScenarioParser(
        prog=f"scenarios/{name}.py",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--trace", action="store_true", help="print the trace: autograd graph, backward order, ATen ops, torch source"
    )
    parser.add_argument(
        "--save-trace",
        metavar="DIR",
        type=folder,
        help=f"save the trace as DIR/{name}.json, .mmd and .svg (the SVG needs Graphviz)",
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="with --trace or --save-trace: also show the C++ path of each distinct ATen op, "
        "from the Python binding down to the dispatcher (the first capture takes a second or two)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        type=parse_device,
        metavar="{auto,cpu,cuda,mps,...}",
        help="where tensors live; auto picks the accelerator when there is one (default: cpu)",
    )
    parser.add_argument("--seed", default=0, type=whole_number(0), metavar="N", help="random seed (default: 0)")
    if add_options is not None:
        add_options(parser)
    return parser


def run_scenario(
    name: str,
    lesson: Callable[..., Any],
    narrate: Callable[[Any], Iterable[str]],
    *,
    doc: str | None = None,
    add_options: Callable[[argparse.ArgumentParser], None] | None = None,
    show_trace: Callable[[Any, Any], None] | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse the command line, run ``lesson``, print what it found. Returns the exit status.

    ``show_trace(facts, console)``, if given, prints the scenario's own views after the trace.
    A ScenarioError or an OSError (a disk full, say) ends the run with one line and status 1.
    """
    parser = build_parser(name, doc, add_options)
    args = parser.parse_args(argv)
    if args.native and not (args.trace or args.save_trace):
        parser.error("--native adds the C++ path to a trace: use it with --trace or --save-trace")
    try:
        return run_lesson(name, lesson, narrate, args, show_trace)
    except (ScenarioError, OSError) as error:
        print(f"scenarios/{name}.py: error: {error}", file=sys.stderr)
        return 1


def run_lesson(name: str, lesson, narrate, args: argparse.Namespace, show_trace) -> int:
    options = {key: value for key, value in vars(args).items() if key not in SHARED_OPTIONS}
    tracer = Tracer(native=args.native) if args.trace or args.save_trace else NO_TRACE

    torch.manual_seed(args.seed)
    with tracer.recording():
        facts = lesson(device=args.device, tracer=tracer, **options)

    from rich.console import Console

    console = Console(highlight=True)
    for line in narrate(facts):
        console.print(line, markup=False, soft_wrap=True)
    if not tracer.enabled:
        return 0

    trace = tracer.trace(name, args.device, facts)
    if args.trace:
        from traces.terminal import render_trace

        console.print()
        render_trace(trace, console)
        if show_trace is not None:
            show_trace(facts, console)
    if args.save_trace:
        from traces.files import save_trace

        written, notes = save_trace(trace, args.save_trace)
        console.print("Saved the trace: " + ", ".join(str(path) for path in written), markup=False, soft_wrap=True)
        for note in notes:
            console.print(note, markup=False)
    return 0
