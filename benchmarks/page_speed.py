"""How quick the trace page is in headless Chromium, and how large its file (docs/benchmarks.md, "The page").

    .venv/bin/python benchmarks/page_speed.py [--loads N] [--screenshot PNG] [--quick]

Saves the pages of three traces, then opens each in one headless Chromium (the
system's ``chromium``, driven as the tests drive it, tests/chromium.py):

- torchvision's densenet121 (random weights, one 64x64 image; 797 nodes): the
  first paint, and opening a module (click to the next frame drawn);
- a chain of 10,000 multiplications: the first paint, opening the line of code
  that made them (10,000 boxes), and one step of the backward timeline;
- resnet18, likewise: the size of its file.

Each time is the median of N fresh loads (default 3). Targets: densenet121's first paint
under 1 s, opening a module under 100 ms, resnet18's file under 2 MB. ``--screenshot``
also saves the README's picture of the backward scenario's page; ``--quick`` uses a chain
of 1,000 and one load (pytest runs it that way, to keep this script working).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _options import OptionParser, output_file, whole_number  # noqa: E402  (no torch: checked at once)


def build_parser() -> OptionParser:
    """The options, each checked before torch loads and before anything is measured."""
    parser = OptionParser(prog="benchmarks/page_speed.py", description=__doc__)
    parser.add_argument("--loads", type=whole_number(1, 1000), default=3, metavar="N", help="fresh loads of each page (default 3)")
    parser.add_argument("--screenshot", type=output_file, metavar="PNG", help="also save the README's screenshot here")
    parser.add_argument("--quick", action="store_true", help="a chain of 1,000 and one load")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # a bad value: one line and status 2 now, not after seconds of imports
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
import torchvision  # noqa: E402
from chromium import Chromium  # noqa: E402

import traces  # noqa: E402
from traces.render.page import to_html  # noqa: E402

TARGETS = {"densenet121 first paint (s)": 1.0, "densenet121 open a module (ms)": 100, "resnet18 file (MB)": 2.0}

# Measured inside the page: from the navigation's start to the frame after the script drew the
# graph (page.js marks it), and from a click (or a key) to the second frame after it, by which
# time the new boxes have been painted.
FIRST_PAINT = """new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done({
  drawn: performance.getEntriesByName('trace-page-drawn')[0].startTime,
  ready: performance.getEntriesByName('trace-page-ready')[0].startTime }))))"""
AFTER_CLICK = """new Promise(done => {{ const start = performance.now();
  document.querySelector({selector}).dispatchEvent(new MouseEvent('click', {{bubbles: true}}));
  requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - start))); }})"""
AFTER_KEY = """new Promise(done => {{ const start = performance.now();
  document.dispatchEvent(new KeyboardEvent('keydown', {{key: {key}, bubbles: true}}));
  requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - start))); }})"""


def model_trace(name: str):
    torch.manual_seed(0)
    with traces.record(name=name) as trace:
        model = getattr(torchvision.models, name)(weights=None)
        model(torch.randn(1, 3, 64, 64)).sum().backward()
    return trace


def chain_trace(length: int):
    with traces.record(name="chain") as trace:
        h = x = torch.ones(3, requires_grad=True)
        for _ in range(length):
            h = h * 1.0001
        h.sum().backward()
    return trace


def after_click(page, selector: str) -> float:
    return page.evaluate(AFTER_CLICK.format(selector=json.dumps(selector)))


def measure(folder: Path, loads: int, chain_length: int) -> dict:
    pages = {}
    traced = {"densenet121": model_trace("densenet121"), "resnet18": model_trace("resnet18"), "chain": chain_trace(chain_length)}
    for name, trace in traced.items():
        started = time.perf_counter()
        pages[name] = folder / f"{name}.html"
        pages[name].write_text(to_html(trace, folder), encoding="utf-8")
        seconds, megabytes = time.perf_counter() - started, pages[name].stat().st_size / 1e6
        print(f"{name}: {len(trace.graph.nodes)} nodes, page written in {seconds:.2f} s, {megabytes:.2f} MB", flush=True)
    figures: dict[str, list[float]] = {}

    def add(label: str, value: float) -> None:
        figures.setdefault(label, []).append(value)

    with Chromium() as browser:
        for _ in range(loads):
            page = browser.open(pages["densenet121"].as_uri())
            first = page.evaluate(FIRST_PAINT)
            add("densenet121 first paint (s)", first["drawn"] / 1000)
            add("densenet121 script done (s)", first["ready"] / 1000)
            add("densenet121 boxes at depth 2", page.evaluate("document.querySelectorAll('#graph .box').length"))
            add("densenet121 open a module (ms)", after_click(page, '[data-unit="module:features.denseblock3"]'))
            add("densenet121 unfold 24 layers (ms)", after_click(page, '[data-unit^="fold:features.denseblock3"]'))
            add("densenet121 boxes then", page.evaluate("document.querySelectorAll('#graph .box').length"))
            assert page.errors() == [], page.errors()

            page = browser.open(pages["chain"].as_uri())
            first = page.evaluate(FIRST_PAINT)
            add("chain first paint (s)", first["drawn"] / 1000)
            add("chain open its line (s)", after_click(page, '[data-unit^="line:"]') / 1000)
            add("chain boxes then", page.evaluate("Number(document.getElementById('graph').dataset.units)"))
            add("chain boxes drawn (in and near the view)", page.evaluate("document.querySelectorAll('#graph .box').length"))
            steps = [page.evaluate(AFTER_KEY.format(key=json.dumps("ArrowRight"))) for _ in range(5)]
            add("chain one timeline step (ms)", statistics.median(steps))
            add("chain to the last step (ms)", page.evaluate(AFTER_KEY.format(key=json.dumps("End"))))
            add("chain back one step (ms)", page.evaluate(AFTER_KEY.format(key=json.dumps("ArrowLeft"))))
            assert page.errors() == [], page.errors()
            browser.send("Target.closeTarget", {"targetId": page.send("Target.getTargetInfo")["targetInfo"]["targetId"]})
    result = {label: round(statistics.median(values), 3) for label, values in figures.items()}
    result["resnet18 file (MB)"] = round(pages["resnet18"].stat().st_size / 1e6, 3)
    result["densenet121 file (MB)"] = round(pages["densenet121"].stat().st_size / 1e6, 3)
    result["chain file (MB)"] = round(pages["chain"].stat().st_size / 1e6, 3)
    return result


def screenshot(path: Path, folder: Path) -> None:
    """The backward scenario's page, three steps into backward, with MulBackward0's panel open."""
    from scenarios.backward import backward_pass
    from traces import Tracer

    tracer = Tracer()
    with tracer.recording():
        facts = backward_pass(tracer=tracer)
    page_file = folder / "backward.html"
    page_file.write_text(to_html(tracer.trace("backward", "cpu", facts), folder), encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with Chromium(width=1280, height=640) as browser:
        page = browser.open(page_file.as_uri())
        page.evaluate("document.querySelector('[data-node=\"n0\"]').dispatchEvent(new MouseEvent('click', {bubbles: true}))")
        for _ in range(3):
            page.press("ArrowRight")
        page.screenshot(path)
    print(f"Saved the screenshot: {path}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        if args.screenshot:
            screenshot(args.screenshot, Path(scratch))
        result = measure(Path(scratch), 1 if args.quick else args.loads, 1000 if args.quick else 10_000)
    width = max(map(len, result))
    for label, value in result.items():
        target = f"   (target < {TARGETS[label]})" if label in TARGETS else ""
        print(f"{label:<{width}}  {value:g}{target}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
