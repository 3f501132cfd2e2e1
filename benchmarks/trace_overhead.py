"""What tracing costs, and how long the trace reads, on torchvision models (random weights).

    .venv/bin/python benchmarks/trace_overhead.py [--runs N] [--batch B] [--size S] [--more] [--output FILE]

Measured in one run, on this machine:

- in process: resnet18's forward and backward on a batch of B images of S x S
  pixels (8 of 64 x 64, a tiny input where the tracer's share is largest) and on
  4 images of 224 x 224 (ImageNet's size), with ``traces.record()`` around it,
  without, and inside a dispatch mode that only passes each op on (the floor for
  any tracer of ops), taking turns, the median of N each, and their ratios;
- whole process: ``python SCRIPT`` against ``python -m traces SCRIPT`` (its
  output thrown away) for a script that builds the model and runs one forward
  and backward, taking turns, the median of N each (wall time, and CPU time,
  which a busy machine disturbs less), and their ratios; for resnet18 and
  densenet121;
- the trace: lines of the whole default terminal trace at 80 and 120 columns,
  lines wider than the terminal that are not a link alone on its line, the time to
  render it, and the size of its JSON; for resnet18 and densenet121, and with
  ``--more`` for swin_t, vit_b_16, an LSTM and a TransformerEncoder too.

Prints the figures and writes them as JSON with ``--output``. ``--quick``
measures a little of everything once, without warming up (pytest runs it so, to keep it working).
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _options import OptionParser, output_file, whole_number  # noqa: E402  (no torch: checked at once)


def build_parser() -> OptionParser:
    """The options, each checked before torch loads and before anything is measured."""
    parser = OptionParser(prog="benchmarks/trace_overhead.py", description=__doc__)
    parser.add_argument("--runs", type=whole_number(1, 1000), default=7, metavar="N", help="rounds of each comparison (default 7)")
    parser.add_argument("--batch", type=whole_number(1, 1024), default=8, metavar="N", help="images per batch (default 8)")
    parser.add_argument("--size", type=whole_number(32, 1024), default=64, metavar="PIXELS", help="image side in pixels (default 64)")
    parser.add_argument("--more", action="store_true", help="also swin_t, vit_b_16, an LSTM, a TransformerEncoder")
    parser.add_argument("--quick", action="store_true", help="a little of everything, once")
    parser.add_argument("--output", type=output_file, metavar="FILE", help="write the figures as JSON here")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # a bad value: one line and status 2 now, not after seconds of imports

import torch  # noqa: E402
import torchvision  # noqa: E402
from rich.console import Console  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import traces  # noqa: E402
from traces.basics.saving import write_atomically  # noqa: E402
from traces.render.json_file import trace_to_json  # noqa: E402

PYTHON = sys.executable
# A link alone on its line (a path:line, possibly numbered, or a URL): never cut, so it stays a link.
PATH_LINE = re.compile(r"^\s*(\[\d+\] )?(\S+:\d+|https://\S+)$")
# The targets (issue 12): traced against untraced.
TARGETS = {"in process": 1.5, "whole process": 1.3, "resnet18 lines": 400, "densenet121 lines": 600}

SCRIPT = """
import torch, torchvision
torch.manual_seed(0)
model = torchvision.models.{model}(weights=None)
x = torch.randn({batch}, 3, {size}, {size})
loss = model(x).sum()
loss.backward()
"""


class PassOn(TorchDispatchMode):
    """A dispatch mode that only passes each operator on: what any tracer of operators costs at least."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def in_process(runs: int, batch: int, size: int, warm_up: bool = True) -> dict[str, float]:
    """Forward and backward untraced, in a mode that only passes ops on, and traced: the median
    of ``runs`` each, taking turns; ``warm_up=False`` (--quick) times the first calls too."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    x = torch.randn(batch, 3, size, size)

    def plain() -> None:
        model.zero_grad()
        model(x).sum().backward()

    def mode_only() -> None:
        model.zero_grad()
        with PassOn():
            model(x).sum().backward()

    def traced() -> None:
        model.zero_grad()
        with traces.record():
            model(x).sum().backward()

    if warm_up:
        plain(), mode_only(), traced()  # the first calls pick kernels and allocate
    times: dict[str, list[float]] = {"plain_s": [], "mode_only_s": [], "traced_s": []}
    for _ in range(runs):
        for label, run in (("plain_s", plain), ("mode_only_s", mode_only), ("traced_s", traced)):
            started = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - started)
    figures = {label: statistics.median(values) for label, values in times.items()}
    figures["ratio"] = figures["traced_s"] / figures["plain_s"]
    figures["mode_only_ratio"] = figures["mode_only_s"] / figures["plain_s"]
    return figures


def child_run(argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one command, its output thrown away."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=900)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_process(model: str, runs: int, batch: int, size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / f"{model}_step.py"
        script.write_text(textwrap.dedent(SCRIPT.format(model=model, batch=batch, size=size)))
        commands = {"plain": [PYTHON, str(script)], "traced": [PYTHON, "-m", "traces", str(script)]}
        walls: dict[str, list[float]] = {label: [] for label in commands}
        cpus: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(runs):
            for label, argv in commands.items():
                wall, cpu = child_run(argv)
                walls[label].append(wall)
                cpus[label].append(cpu)
    figures = {}
    for label in commands:
        figures[f"{label}_s"] = statistics.median(walls[label])
        figures[f"{label}_cpu_s"] = statistics.median(cpus[label])
    figures["ratio"] = figures["traced_s"] / figures["plain_s"]
    figures["cpu_ratio"] = figures["traced_cpu_s"] / figures["plain_cpu_s"]
    return figures


def model_and_input(name: str, size: int):
    if name == "lstm":
        return torch.nn.LSTM(16, 32, num_layers=2), torch.randn(50, 1, 16)
    if name == "transformer_encoder":
        layer = torch.nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64)
        return torch.nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False), torch.randn(10, 1, 32)
    image = 224 if name.startswith("vit") else size
    return getattr(torchvision.models, name)(weights=None), torch.randn(1, 3, image, image)


def first_tensor(output):
    return output[0] if isinstance(output, tuple) else output


def traced_model(name: str, size: int) -> traces.Trace:
    """The whole default trace of a model: building it, forward, backward, as python -m traces records it."""
    torch.manual_seed(0)
    with traces.record(name=name) as trace:
        model, x = model_and_input(name, size)
        first_tensor(model(x)).sum().backward()
    return trace


def readability(name: str, size: int) -> dict[str, float]:
    """Lines of the whole default trace, as python -m traces prints it."""
    trace = traced_model(name, size)
    figures: dict[str, float] = {"nodes": len(trace.graph.nodes)}
    for width in (80, 120):
        console = Console(file=io.StringIO(), width=width, color_system=None)
        started = time.perf_counter()
        trace.show(console)
        figures[f"render_{width}_s"] = time.perf_counter() - started
        lines = console.file.getvalue().splitlines()
        figures[f"lines_{width}"] = len(lines)
        figures[f"too_wide_{width}"] = sum(len(line) > width and not PATH_LINE.match(line) for line in lines)
    figures["json_kib"] = len(trace_to_json(trace)) / 1024
    return figures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = 1 if args.quick else args.runs
    models = ["resnet18"] if args.quick else ["resnet18", "densenet121"]
    readable = models + (["swin_t", "vit_b_16", "lstm", "transformer_encoder"] if args.more else [])

    figures: dict = {
        "machine": {
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "load_average_1min": os.getloadavg()[0],
        },
        "batch": args.batch,
        "size": args.size,
    }
    figures["in_process"] = {}
    for batch, size in [(args.batch, args.size)] + ([] if args.quick else [(4, 224)]):
        print(f"In process: resnet18 forward + backward, batch {batch} of {size}x{size}, {runs} runs")
        result = figures["in_process"][f"{batch}x{size}"] = in_process(runs, batch, size, warm_up=not args.quick)
        print(f"  untraced {result['plain_s']:.3f} s, traced {result['traced_s']:.3f} s:"
              f" {result['ratio']:.2f}x (target <= {TARGETS['in process']});"
              f" a dispatch mode that only passes ops on {result['mode_only_s']:.3f} s: {result['mode_only_ratio']:.2f}x")
    figures["whole_process"] = {}
    for model in [] if args.quick else models:
        print(f"Whole process: python SCRIPT against python -m traces SCRIPT, {model}, {runs} runs")
        result = figures["whole_process"][model] = whole_process(model, runs, args.batch, args.size)
        print(f"  wall {result['plain_s']:.2f} s -> {result['traced_s']:.2f} s: {result['ratio']:.2f}x;"
              f" CPU {result['plain_cpu_s']:.2f} s -> {result['traced_cpu_s']:.2f} s: {result['cpu_ratio']:.2f}x"
              f" (target <= {TARGETS['whole process']})")
    figures["trace"] = {}
    print("The default terminal trace (building the model, forward, backward; JSON size)")
    for name in readable:
        result = figures["trace"][name] = readability(name, args.size)
        print(f"  {name}: {result['nodes']} nodes; {result['lines_80']} lines at 80 columns,"
              f" {result['lines_120']} at 120; {result['too_wide_80'] + result['too_wide_120']} too wide;"
              f" rendered in {result['render_80_s']:.2f} s / {result['render_120_s']:.2f} s;"
              f" JSON {result['json_kib']:.0f} KiB")
    if args.output:
        write_atomically(args.output, json.dumps(figures, indent=2) + "\n")  # never a half-written file
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
