"""The JSON form of a trace: the one machine-readable form, read by the tests.

Schema (``schema_version`` 2); every key is always present:

- ``schema_version``: 2
- ``scenario``: the scenario's name, e.g. ``"backward"`` (for ``python -m traces``,
  the script's name; for ``traces.record()``, the name it was given)
- ``torch_version``, ``device``: where it ran
- ``graph``: ``null`` when the run recorded no backward, else
  - ``outputs``: ids of the output tensors' nodes
  - ``nodes``: ``{id, name, variable, leaf, saved, module, path, line, made}``;
    ``leaf`` is ``null`` for a function node and a tensor summary for
    ``AccumulateGrad``; ``saved`` lists ``{name, shape, dtype, value, freed}`` for
    each ``_saved_*`` attribute; ``module`` names the ``nn.Module`` whose forward
    made the node, or ``null``; ``path`` and ``line`` give the line of the user's
    code that made the node (the innermost frame outside torch), or ``null``
    (always for ``AccumulateGrad``); ``made`` is the order autograd made the
    nodes in (0 for the first), ``null`` for ``AccumulateGrad``
  - ``edges``: ``{source, target, output_nr, input_nr, gradient}``: gradient flows
    from ``source`` to ``target``; ``gradient`` is the tensor summary that flowed
  - ``modules``: the modules named in ``nodes`` and the modules they sit in, in
    the order they were first called: ``{name, kind, parent, path, line}``;
    ``kind`` is the class, ``parent`` the name of the module it sits in (``null``
    for an outermost one), ``path`` and ``line`` where the user's code first called it
- ``backward``: the steps in the order the engine ran them:
  ``{order, node, name, arriving, leaving}`` (lists of tensor summaries or ``null``)
- ``ops``: every ATen operator call, in order: ``{phase, op, inputs, outputs}``,
  ``phase`` being ``"forward"`` (from the start of the run to the traced
  backward) or ``"backward"``, ``inputs`` and ``outputs`` lists of ``{shape, dtype}``
- ``source``: torch's Python functions entered, in first-entry order:
  ``{function, path, line, depth, calls}``
- ``source_skipped``: why ``source`` is empty (a debugger owned tracing), or ``null``
- ``facts``: what the scenario's lesson function returned

A tensor summary is ``{shape, dtype, values, norm}``: ``values`` for tensors of at
most 16 elements, ``norm`` for larger floating-point tensors.

Version 2 added ``path``, ``line`` and ``made`` to nodes and ``modules`` to the graph.

Which parts depend on the machine or on torch's file layout (``torch_version``,
``device``, ``source``) and which do not is spelled out in ``traces.compare``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from traces.trace import Trace


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    fields = dataclasses.asdict(trace)
    return {"schema_version": fields.pop("schema_version"), **fields}
