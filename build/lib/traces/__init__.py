"""Record what PyTorch did during a run: the autograd graph and the backward pass.

Recording lives in ``graph``, ``backward`` and ``trace``; the renderers
(``terminal``, ``json_file``) only read a finished ``Trace`` and are imported
only by whoever renders.
"""

from traces.backward import BackwardRecording, BackwardStep, record_backward
from traces.graph import AutogradGraph, AutogradNode, Edge, walk_graph
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
    "record_backward",
    "walk_graph",
]
