"""The command line every scenario shares: --trace, --save-trace, --device, --seed.

A scenario's ``__main__`` block calls ``run_scenario``, which parses the
arguments, runs the lesson function, prints the narrative and, when asked,
the trace. Every way it can end badly is one line on stderr:

- a bad argument, status 2, before any work starts: numbers out of the range
  the code can use, empty paths, output places that cannot be written;
- a failure during the run that the user can fix (damaged data, a full disk), status 1;
- Ctrl-C, status 130, with every hook and mode of the tracer removed.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager

import torch

from scenarios._ctrl_c import INTERRUPTED, hand_back, say
from traces import NO_TRACE, Tracer
from traces.__main__ import whole_number  # the one argument type both command lines use

SHARED_OPTIONS = {"trace", "save_trace", "native", "device", "seed"}


class ScenarioParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block.

    A value that starts with a minus sign is a value, not an option, whenever
    it reads as a number: ``--lr -inf`` and ``--lr -1e-3`` reach the option's
    check ("is not a positive number") instead of "expected one argument".
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # argparse's own pattern knows only -1 and -.5; no option of ours looks like a number.
        self._negative_number_matcher = re.compile(
            r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE
        )

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
# explains, in one line, why it cannot (whole_number comes from traces/__main__.py).

MAX_SEED = 2**64 - 1  # torch.manual_seed takes 64 bits


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def folder(text: str) -> Path:
    """A folder to read from or write into; it need not exist yet, but nothing may be in its way."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty; give a folder")
    path = Path(text)
    in_the_way = nearest_existing(path)
    if not in_the_way.is_dir():
        raise argparse.ArgumentTypeError(f"{str(in_the_way)!r} is a file, not a folder")
    return path


def output_folder(text: str) -> Path:
    """A folder to write into: it, or the folder it will be made in, must be writable now."""
    path = folder(text)
    problem = cannot_write_into(nearest_existing(path))
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return path


def output_file(text: str) -> Path:
    """A file to write, in a folder that exists and is writable."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty; give a file name")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    in_the_way = nearest_existing(path.parent)
    if not in_the_way.is_dir():
        raise argparse.ArgumentTypeError(f"{str(in_the_way)!r} is a file, not a folder")
    if in_the_way != path.parent:
        raise argparse.ArgumentTypeError(f"the folder {str(path.parent)!r} does not exist")
    problem = cannot_write_into(path.parent)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return path


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else the closest folder above it that does.

    A symbolic link that leads nowhere (or into a loop) is in the way: nothing can be made there.
    """
    while not path.exists() and path != path.parent:
        if os.path.islink(path):
            raise argparse.ArgumentTypeError(f"{str(path)!r} is a symbolic link that leads nowhere")
        path = path.parent
    return path


def cannot_write_into(folder: Path) -> str | None:
    """Why new files cannot be made in ``folder`` (an existing folder), or None if they can."""
    if os.access(folder, os.W_OK | os.X_OK):  # also False for root on a read-only or immutable folder
        return None
    read_only = hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY
    reason = "it is on a read-only file system" if read_only else "permission denied"
    return f"cannot write into {str(folder)!r}: {reason}"


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
        type=output_folder,
        help=f"save the trace as DIR/{name}.json, .mmd, .html (a page to open in a browser) and .svg (the SVG needs Graphviz)",
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
    parser.add_argument(
        "--seed", default=0, type=whole_number(0, MAX_SEED), metavar="N", help="random seed (default: 0)"
    )
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
    trace_name: str | None = None,
    in_turn: Callable[[], ContextManager] | None = None,
) -> int:
    """Parse the command line, run ``lesson``, print what it found. Returns the exit status.

    ``show_trace(facts, console)``, if given, prints the scenario's own views after the trace.
    ``trace_name`` names the trace and its files (default ``name``); ``in_turn()``, if given,
    is entered around all the printing (one process of several prints while the others wait).
    A ScenarioError or an OSError (a disk full, say) ends the run with one line and status 1;
    Ctrl-C with one line and status 130, once the tracer has removed its hooks.
    """
    try:
        hand_back()  # from here on, Ctrl-C raises KeyboardInterrupt, so that everything is cleaned up
        parser = build_parser(name, doc, add_options)
        args = parse_arguments(parser, argv)
        return run_lesson(trace_name or name, lesson, narrate, args, show_trace, in_turn or nullcontext)
    except (ScenarioError, OSError) as error:
        say(f"scenarios/{name}.py: error: {one_line(error)}")
        return 1
    except KeyboardInterrupt:
        say(f"scenarios/{name}.py: interrupted (Ctrl-C); no file was left half-written")
        return INTERRUPTED


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The scenario's arguments, checked alone and together (a bad one: one line, status 2)."""
    args = parser.parse_args(argv)
    if args.native and not (args.trace or args.save_trace):
        parser.error("--native adds the C++ path to a trace: use it with --trace or --save-trace")
    return args


def one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def run_lesson(name: str, lesson, narrate, args: argparse.Namespace, show_trace, in_turn=nullcontext) -> int:
    options = {key: value for key, value in vars(args).items() if key not in SHARED_OPTIONS}
    tracer = Tracer(native=args.native) if args.trace or args.save_trace else NO_TRACE

    torch.manual_seed(args.seed)
    with tracer.recording():
        facts = lesson(device=args.device, tracer=tracer, **options)
    with in_turn():
        return show_what_happened(name, facts, narrate, args, tracer, show_trace)


def show_what_happened(name: str, facts, narrate, args: argparse.Namespace, tracer: Tracer, show_trace) -> int:
    """Print the narrative of ``facts`` and, when asked, print and save the trace."""
    from rich.console import Console

    console = Console(highlight=True)
    for line in narrate(facts):
        console.print(line, markup=False, soft_wrap=True)
    if not tracer.enabled:
        return 0

    trace = tracer.trace(name, args.device, facts)
    if args.trace:
        from traces.render.terminal import render_trace

        console.print()
        render_trace(trace, console)
        if show_trace is not None:
            show_trace(facts, console)
    if args.save_trace:
        from traces.render.files import save_trace
        from traces.render.terminal import print_saved

        written, notes = save_trace(trace, args.save_trace)
        print_saved(console, written)
        for note in notes:
            console.print(note, markup=False, soft_wrap=True)
    return 0
