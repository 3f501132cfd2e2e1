"""Record what PyTorch did during a run: the autograd graph and the backward pass.

For any code::

    import traces

    with traces.record() as trace:
        loss = model(x).sum()
        loss.backward()
    trace.show()

or, for a whole script, ``python -m traces script.py``.

The package is built in floors; a module imports only from its own floor or the
floors below (tests/test_floors.py checks it):

- ``traces.render``: what reads a finished ``Trace`` and shows or saves it (terminal,
  JSON, Mermaid, SVG, the HTML page, the set of files); imported only by whoever renders
- ``traces.recorders``: what watches a run and fills in a ``Trace``; beside it,
  ``traces.mirror``: the autograd engine in readable Python
- ``traces.data``: the plain data of a run (tensor and node descriptions, the ``Trace``)
- ``traces.below``: what torch says about itself below Python, read from the wheel
- ``traces.basics``: where things are, and saving bytes whole

This module, ``__main__`` and ``_starting`` are the face on top.
"""

import traces._starting  # noqa: F401  isort: skip (first: Ctrl-C while `python -m traces` loads torch is one line)
from traces.data.graph import AutogradGraph, AutogradNode, Edge, walk_graph
from traces.data.trace import Trace
from traces.recorders.any_code import record
from traces.recorders.backward import BackwardRecording, BackwardStep, record_backward
from traces.recorders.tracer import NO_TRACE, Tracer


# The face plugs the renderers into the plain data (traces/data/trace.py cannot import them: they sit
# floors above it). Each loads its renderer on first use, so recording alone never imports one.
def _print_trace(trace, console, views, depth, focus) -> None:
    from rich.console import Console

    from traces.render.terminal import render_trace

    render_trace(trace, console or Console(), views=views, depth=depth, focus=focus)


def _save_trace(trace, directory, depth):
    from traces.render.files import save_trace

    written, _notes = save_trace(trace, directory, depth)
    return written


Trace.printer = _print_trace
Trace.saver = _save_trace

__all__ = [
    "NO_TRACE",
    "AutogradGraph",
    "AutogradNode",
    "BackwardRecording",
    "BackwardStep",
    "Edge",
    "Trace",
    "Tracer",
    "record",
    "record_backward",
    "walk_graph",
]
