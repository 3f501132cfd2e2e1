"""Stop in the C++ kernel of an ATen op with gdb, on a stock wheel.

    python -m traces.gdb --op aten::mul.Tensor scenarios/backward.py

runs the script under gdb with a breakpoint on the kernel that the ops view
names for the op (``at::native::structured_mul_out::impl``), prints the call
stack at the first stop (from the Python binding ``THPVariable_mul`` down to the
kernel) and leaves you at the ``(gdb)`` prompt: ``bt``, ``up``, ``finish``,
``disassemble``, ``info registers``, ``continue`` to the next call. The wheel
has symbols but no debug information, so there are function names and
machine code, not C++ source lines. It prints the gdb command it runs first,
so you can run gdb yourself.

gdb reads the symbols of torch's own libraries only: reading every library
Python loads (the CUDA ones included) takes much longer. ``--batch`` runs
without a prompt: stop, print the stack, end the program.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys

import torch

from traces.below.dispatcher import describe_op, dispatch_table

# gdb reads symbols for these only (the kernels live in libtorch_cpu, the Python
# bindings in libtorch_python, the dispatcher in libc10 and libtorch_cpu).
LIBRARIES = ("libtorch_cpu", "libtorch_python", "libc10", "libpython")
CUDA_LIBRARIES = ("libtorch_cuda", "libc10_cuda")

# A function exported from libtorch_cpu and called from inside it is reached
# through a PLT stub named "<function>@plt"; gdb puts the breakpoint on both.
# Stop in the function itself only. ($_caller_matches with 0 frames tests the
# frame at hand; it needs a gdb built with Python, which distributions ship.)
NOT_IN_PLT = 'if !$_caller_matches(".*@plt$", 0)'


def gdb_commands(symbols: list[str], libraries: tuple[str, ...] = LIBRARIES) -> list[str]:
    """The gdb commands that run the program to the first of ``symbols`` and print the stack."""
    return [
        "set pagination off",
        "set print asm-demangle on",  # C++ names, not mangled ones, in the machine code
        "set breakpoint pending on",
        "set auto-solib-add off",  # read no library's symbols unless asked below
        "tcatch load libtorch_cpu",  # stop once, when Python loads torch's C++ libraries
        "run",
        *(f"sharedlibrary {library}" for library in libraries),
        *(f"break {symbol} {NOT_IN_PLT}" for symbol in symbols),
        "continue",
        "backtrace",
        "x/4i $pc",  # the machine code at the stop: with no debug information, this is the kernel's text
    ]


def gdb_argv(program: list[str], symbols: list[str], batch: bool = False, cuda: bool = False) -> list[str]:
    libraries = LIBRARIES + (CUDA_LIBRARIES if cuda else ())
    commands = gdb_commands(symbols, libraries) + (["kill"] if batch else [])
    options = ["-q"] + (["-batch", "-nx"] if batch else [])
    helper = python_gdb_helper(program[0])
    if helper is not None:  # CPython's own gdb helper: py-bt shows the Python stack
        options += ["-iex", f"add-auto-load-safe-path {helper}"]
    return ["gdb", *options, *(part for command in commands for part in ("-ex", command)), "--args", *program]


def python_gdb_helper(python: str) -> str | None:
    """The gdb helper an interpreter ships beside its binary (python3.11-gdb.py), if any."""
    helper = os.path.realpath(shutil.which(python) or python) + "-gdb.py"
    return helper if os.path.isfile(helper) else None


def kernel_symbol(op: str, device: str) -> str:
    """The C++ function of an op's kernel for a device type, as the ops view names it."""
    if not dispatch_table(op):
        raise ValueError(f"{op} is not an operator this torch knows (the ops view of --trace lists the ones that ran)")
    key = str(torch._C._dispatch_key_for_device(device))
    kernel = describe_op(op, [key])
    if kernel.symbol is None:
        raise ValueError(f"{op} has no kernel named in native_functions.yaml" + (f": {kernel.note}" if kernel.note else ""))
    return kernel.symbol


def script_file(text: str) -> str:
    """The script to run: a file that exists and can be read (checked before gdb starts, which takes seconds)."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty; give a Python script")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a Python script")
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} does not exist")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be read: permission denied")
    return text


def symbol_name(text: str) -> str:
    """A C++ function for ``break``: one line, not empty."""
    if not text.strip() or "\n" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a function name")
    return text


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m traces.gdb", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--op", action="append", default=[], metavar="OP", help="an ATen op, e.g. aten::mul.Tensor")
    parser.add_argument(
        "--break", dest="symbols", type=symbol_name, action="append", default=[], metavar="SYMBOL", help="a C++ function"
    )
    parser.add_argument("--device", default="cpu", help="whose kernel to stop in: cpu (default) or cuda")
    parser.add_argument("--batch", action="store_true", help="no prompt: stop, print the stack, end the program")
    parser.add_argument("script", type=script_file, help="the Python script to run, e.g. scenarios/backward.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    args = parser.parse_args(argv)
    if not args.op and not args.symbols:
        parser.error("name a kernel to stop in: --op aten::mul.Tensor (the ops view of --trace lists them) or --break SYMBOL")
    if args.device not in ("cpu", "cuda"):
        parser.error(f"--device: {args.device!r} is not cpu or cuda")
    try:
        args.symbols += [kernel_symbol(op, args.device) for op in args.op]
    except (ValueError, RuntimeError) as error:
        parser.error(f"--op: {error}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if shutil.which("gdb") is None:
        print("python -m traces.gdb: error: gdb is not installed (apt-get install gdb)", file=sys.stderr)
        return 1
    command = gdb_argv([sys.executable, args.script, *args.args], args.symbols, args.batch, args.device == "cuda")
    print(shlex.join(command), flush=True)
    os.execvp(command[0], command)  # gdb takes over this process, and the terminal


if __name__ == "__main__":
    raise SystemExit(main())
