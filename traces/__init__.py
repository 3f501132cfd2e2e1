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
from traces.trace import NO_TRACE, Trace, Tracer

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
