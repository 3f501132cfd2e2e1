"""Record what PyTorch did during a run: the autograd graph and the backward pass.

For any code::

    import traces

    with traces.record() as trace:
        loss = model(x).sum()
        loss.backward()
    trace.show()

or, for a whole script, ``python -m traces script.py``. Recording lives in
``graph``, ``backward``, ``ops``, ``source``, ``modules``, ``trace`` and
``record``; the renderers (``terminal``, ``json_file``, ``mermaid``,
``picture``, ``page``) only read a finished ``Trace`` and are imported only by
whoever renders.
"""

import traces._starting  # noqa: F401  isort: skip (first: Ctrl-C while `python -m traces` loads torch is one line)
from traces.backward import BackwardRecording, BackwardStep, record_backward
from traces.graph import AutogradGraph, AutogradNode, Edge, walk_graph
from traces.any_code import record
from traces.trace import Trace
from traces.tracer import NO_TRACE, Tracer


# The face plugs the renderers into the plain data (traces/trace.py cannot import them: they sit
# floors above it). Each loads its renderer on first use, so recording alone never imports one.
def _print_trace(trace, console, views, depth, focus) -> None:
    from rich.console import Console

    from traces.terminal import render_trace

    render_trace(trace, console or Console(), views=views, depth=depth, focus=focus)


def _save_trace(trace, directory, depth):
    from traces.files import save_trace

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
