"""python -m traces [options] SCRIPT [ARGS...]: trace any script's first backward pass.

Runs SCRIPT as ``__main__`` with ARGS (as ``python SCRIPT ARGS...`` would),
records from its start to the end of its first backward pass, lets it run to
its end, then prints the four views of the trace. SCRIPT's output, exceptions
and exit status pass through unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from traces._starting import INTERRUPTED, hand_back, say
from traces.data.trace import VIEWS

DEFAULT_VIEWS = ",".join(VIEWS)
PROG = "python -m traces"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def view_list(text: str) -> tuple[str, ...]:
    views = tuple(view.strip() for view in text.split(",") if view.strip())
    unknown = [view for view in views if view not in VIEWS]
    if unknown or not views:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of views; choose from {DEFAULT_VIEWS}")
    return views


def whole_number(minimum: int, maximum: int = sys.maxsize) -> Callable[[str], int]:
    """A whole number from ``minimum`` to ``maximum`` (by default the largest that sizes and counts can be)."""

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


def output_folder(text: str) -> Path:
    """A folder to write the trace into, checked before the script runs: nothing may be in its
    way, and it (or the folder it will be made in) must be writable now."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty; give a folder")
    path = Path(text)
    existing = path
    while not existing.exists() and existing != existing.parent:
        if os.path.islink(existing):  # a link to nowhere, or a loop: nothing can be made there
            raise argparse.ArgumentTypeError(f"{str(existing)!r} is a symbolic link that leads nowhere")
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {str(existing)!r}")
    return path.absolute()  # where it is now: the script may change the current folder


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description=(
            "Run SCRIPT as __main__ (as 'python SCRIPT ARGS...' would), record from its start to the end of its "
            "first backward pass (Tensor.backward, torch.autograd.backward or torch.autograd.grad), let it "
            "finish, then print the four views: the autograd graph, the order backward ran it in with the "
            "gradient on every edge, the ATen ops, and the torch source entered. SCRIPT's output, exceptions and "
            "exit status pass through unchanged. Options go before SCRIPT; everything after it is SCRIPT's."
        ),
    )
    parser.add_argument(
        "--save-trace",
        metavar="DIR",
        type=output_folder,
        help="also save the trace as DIR/<script name>.json, .mmd, .html and .svg (the SVG needs Graphviz's dot)",
    )
    parser.add_argument(
        "--html",
        action="store_true",
        help="also save the trace as a page, <script name>.html, in the current folder (with --save-trace: in DIR); "
        "one self-contained file to open in any browser, offline",
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="save the page as --html does and open it in the web browser",
    )
    parser.add_argument(
        "--backward",
        metavar="N",
        type=whole_number(1),
        default=1,
        help="record the N-th backward pass instead of the first (default: 1)",
    )
    parser.add_argument(
        "--views",
        metavar="LIST",
        type=view_list,
        default=VIEWS,
        help=f"which views to print, comma-separated (default: {DEFAULT_VIEWS})",
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="also capture, for each distinct ATen op, the C++ frames from the last Python line to the "
        "dispatcher (the first capture takes a second or two)",
    )
    parser.add_argument(
        "--depth",
        metavar="N",
        type=whole_number(0),
        help="for a model: how many levels of nn.Modules the graph, backward view and picture open up "
        "(default: 2; every node is in the JSON whatever the depth)",
    )
    parser.add_argument(
        "--engine",
        choices=("torch", "python"),
        default="torch",
        help="which autograd engine runs SCRIPT's backward passes: torch's C++ one (default) or the Python "
        "mirror in traces/mirror/engine.py, which a debugger can step through node by node",
    )
    parser.add_argument(
        "--focus",
        metavar="NAME",
        help="instead of the graph and backward views, show one part of the graph node by node, with the "
        "formulas and numbers and the path from the output: a module (layer1.0.conv1), a parameter "
        "(layer1.0.conv1.weight), a named tensor, or a node (n12, ConvolutionBackward0). The name is "
        "checked after the script ran (its model exists only then): an unknown one is one line on stderr "
        "with the closest names, exit status 2, and no views printed (--save-trace still saves the trace)",
    )
    parser.add_argument("script", metavar="SCRIPT", help="the Python script to run")
    parser.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER, help="arguments for SCRIPT")
    return parser


def exit_status(code) -> int:
    """The status Python exits with for ``sys.exit(code)``; prints a message code as Python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def print_script_error(error: BaseException, script_file: str) -> None:
    """The traceback as ``python SCRIPT`` prints it: from SCRIPT's first frame, without this runner's.
    ``script_file`` is SCRIPT's real path, taken before it ran (it may change the current folder)."""
    if isinstance(error, SyntaxError) and error.filename and os.path.realpath(error.filename) == script_file:
        sys.excepthook(type(error), error.with_traceback(None), None)  # the script never started: only where
        return
    tb = error.__traceback__
    while tb is not None and os.path.realpath(tb.tb_frame.f_code.co_filename) != script_file:
        tb = tb.tb_next
    error = error.with_traceback(tb or error.__traceback__)
    sys.excepthook(type(error), error, error.__traceback__)


def run_script(script: str, args: list[str]) -> tuple[int, BaseException | None]:
    """Run ``script`` as ``__main__``; returns its exit status and the exception it ended with, if any."""
    saved_argv, saved_path0 = sys.argv, sys.path[0]
    sys.argv = [script, *args]
    path = os.path.abspath(script)  # as python SCRIPT has it in __file__ and tracebacks
    sys.path[0] = os.path.dirname(path)  # where python SCRIPT looks for imports first
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exit_:
        return exit_status(exit_.code), None
    except BaseException as error:  # noqa: BLE001 - the script's own error, reported as Python would
        return (130 if isinstance(error, KeyboardInterrupt) else 1), error
    finally:
        sys.argv, sys.path[0] = saved_argv, saved_path0
    return 0, None


def ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    script = args.script
    problem = cannot_run(script)
    if problem:
        say(f"{PROG}: error: {problem}")
        return 2

    script_file = os.path.realpath(script)
    args.page_folder = Path.cwd()  # where --html writes: the script may change the current folder
    from traces.basics.places import paths_from
    from traces.recorders.any_code import BackwardWatch, watching
    from traces.recorders.tracer import Tracer

    tracer = Tracer(native=args.native)
    watch = BackwardWatch(tracer, args.backward)
    from traces.mirror.engine import installed

    engine = installed() if args.engine == "python" else contextlib.nullcontext()
    hand_back()  # the script meets Ctrl-C as it would under python SCRIPT
    with paths_from(os.getcwd()):  # the script may change the current folder
        with engine, watching(watch), saying_when_os_exit_loses_the_trace(script):
            status, error = run_script(script, args.args)
        sys.stdout.flush()
        if os.getpid() != watch.pid:  # a child the script forked, ending: only the parent traces
            if error is not None:
                print_script_error(error, script_file)
            return status
        try:
            return finish(tracer, watch, args, script_file, status, error)
        except KeyboardInterrupt:  # while the trace was printed or saved: a save leaves no half-written file
            say(f"\n{PROG}: interrupted (Ctrl-C); no file was left half-written")
            return INTERRUPTED


def cannot_run(script: str) -> str | None:
    """Why ``python SCRIPT`` could not even start, as one line (python's own words), else None."""
    if os.path.isdir(script):
        return f"{script!r} is a folder, not a script"
    try:
        with open(script, "rb"):
            return None
    except OSError as error:
        return f"can't open file {os.path.abspath(script)!r}: [Errno {error.errno}] {error.strerror}"


@contextmanager
def saying_when_os_exit_loses_the_trace(script: str) -> Iterator[None]:
    """``os._exit`` ends a process at once, before the trace is printed: say so, then exit as asked.

    Only in this process: a child the script forked (multiprocessing's, say) ends with
    ``os._exit`` as it always does, and says nothing.
    """
    real_exit, parent = os._exit, os.getpid()

    def exit_now(status: int) -> None:
        if os.getpid() == parent:
            say(f"{PROG}: {script} ended with os._exit({status}), so the trace was not printed")
            sys.stderr.flush()
        real_exit(status)

    os._exit = exit_now
    try:
        yield
    finally:
        if os._exit is exit_now:
            os._exit = real_exit


def finish(tracer, watch, args: argparse.Namespace, script_file: str, status: int, error: BaseException | None) -> int:
    """After the script: print the trace and save it, then the script's error as Python would."""
    script = args.script
    if isinstance(error, KeyboardInterrupt):
        print_script_error(error, script_file)
        return status
    name = Path(script).stem
    args.watch = watch
    if watch.recorded:
        trace = tracer.trace(name)
        status = show_and_save(trace, args, status)
    if error is not None:
        print_script_error(error, script_file)
    elif not watch.recorded:
        say(f"{PROG}: error: {no_backward(script, watch)}")
        return status or 1
    return status


def no_backward(script: str, watch) -> str:
    if watch.calls == 0 and watch.elsewhere:
        return (
            f"{script} called backward only on other threads ({times(watch.elsewhere)}); the tracer follows the "
            "thread the script started on (trace another thread's with traces.record() inside it)"
        )
    if watch.calls == 0:
        return (
            f"{script} never called backward (Tensor.backward, torch.autograd.backward or "
            "torch.autograd.grad), so there is nothing to trace"
        )
    return f"{script} called backward {times(watch.calls)}; --backward {watch.wanted} asks for the {ordinal(watch.wanted)}"


def times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def on_other_threads(watch) -> str | None:
    """The note that says which backward the trace shows, when other threads ran some too."""
    if not watch.elsewhere:
        return None
    return (
        f"The trace shows the {ordinal(watch.wanted)} backward pass of the thread the script started on; "
        f"backward ran on other threads too ({times(watch.elsewhere)} while recording), untraced."
    )


def show_and_save(trace, args: argparse.Namespace, status: int) -> int:
    """Print the views and save the files; a failed save is one line on stderr and status 1."""
    from rich.console import Console

    from traces.render.focus import UnknownFocus

    console = Console(highlight=False)
    unknown = None
    try:
        if args.focus is not None and trace.graph is not None:
            from traces.render.focus import focused_nodes

            focused_nodes(trace.graph, args.focus)
        console.print()
        trace.show(console, views=args.views, depth=args.depth, focus=args.focus)
    except UnknownFocus as error:
        unknown = error
    note = on_other_threads(args.watch)
    if note and unknown is None:
        console.print(note, markup=False)
    if args.save_trace is not None:
        from traces.render.files import save_trace

        try:
            written, notes = save_trace(trace, args.save_trace, args.depth)
        except OSError as error:
            say(f"{PROG}: error: could not save the trace in {str(args.save_trace)!r}: {error}")
            return status or 1
        from traces.render.terminal import print_saved

        print_saved(console, written)
        for note in notes:
            console.print(note, markup=False)
    if args.html or args.open:
        page = save_page(trace, args, console)
        if page is None:
            return status or 1
        if args.open:
            open_page(page)
    if unknown is not None:
        say(f"{PROG}: error: {unknown}")
        return 2
    return status


def save_page(trace, args: argparse.Namespace, console) -> Path | None:
    """The page of the trace, written for --html or --open (--save-trace has written it already)."""
    if args.save_trace is not None:
        return args.save_trace / f"{trace.scenario}.html"
    from traces.basics.saving import write_atomically
    from traces.render.page import to_html

    page = args.page_folder / f"{trace.scenario}.html"
    try:
        write_atomically(page, to_html(trace, args.page_folder))
    except OSError as error:
        say(f"{PROG}: error: could not save the page: {error}")
        return None
    console.print("Saved the page:", markup=False)
    console.print(f"  {page}", markup=False, soft_wrap=True, highlight=False)  # whole, on its own line: a link
    return page


def open_page(page: Path) -> None:
    """Open the page in the web browser (the BROWSER environment variable chooses another)."""
    import webbrowser

    if not webbrowser.open(page.as_uri()):
        say(f"{PROG}: no web browser could be started; open {page} yourself")


if __name__ == "__main__":
    raise SystemExit(main())
