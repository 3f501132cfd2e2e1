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
    each ``_saved_*`` attribute (and ``packed``, see below); ``module`` names the ``nn.Module`` whose forward
    made the node, or ``null``; ``path`` and ``line`` give the line of the user's
    code that made the node (the innermost frame outside torch), or ``null``
    (always for ``AccumulateGrad``); ``made`` is the order autograd made the
    nodes in (0 for the first), ``null`` for ``AccumulateGrad``
  - ``edges``: ``{source, target, output_nr, input_nr, gradient, hooked_from}``:
    gradient flows from ``source`` to ``target``; ``gradient`` is the tensor summary
    that flowed (for an edge that alone feeds its input, what arrived, after any
    tensor hook); ``hooked_from`` is what the source sent when a tensor hook
    changed it on the way, else ``null``
  - ``modules``: the modules named in ``nodes`` and the modules they sit in, in
    the order they were first called: ``{name, kind, parent, path, line}``;
    ``kind`` is the class, ``parent`` the name of the module it sits in (``null``
    for an outermost one), ``path`` and ``line`` where the user's code first called it
- ``backward``: the steps in the order the engine ran them:
  ``{order, node, name, arriving, leaving, before_hooks}`` (lists of tensor
  summaries or ``null``): ``arriving`` after any tensor hooks, ``before_hooks``
  what was sent (summed over the edges feeding it) where a hook changed it
- ``ops``: every ATen operator call, in order: ``{phase, op, inputs, outputs, count}``,
  ``phase`` being ``"forward"`` (from the start of the run to the traced
  backward) or ``"backward"``, ``inputs`` and ``outputs`` lists of ``{shape, dtype}``;
  ``count`` calls in a row with the same op, phase and shapes are folded into one entry
- ``source``: torch's Python functions entered, in first-entry order:
  ``{function, path, line, depth, calls}``
- ``source_skipped``: why ``source`` is empty (a debugger owned tracing), or ``null``
- ``facts``: what the scenario's lesson function returned

A tensor summary is ``{shape, dtype, values, norm, layout, nnz, quantized}``:
``values`` for tensors of at most 16 elements (a complex number as ``[real,
imaginary]``; a quantized tensor's values dequantized), ``norm`` for larger
floating-point and complex tensors; ``layout`` (``"sparse_coo"``, ...) and
``nnz`` (stored entries) for a sparse tensor, which keeps its ``norm`` but no
values; ``quantized`` (e.g. ``"per_tensor_affine scale=0.1 zero_point=0"``) for a
quantized one. A saved value (``saved``) also has ``packed``: what a saved-tensor
pack hook (``torch.utils.checkpoint``, offloading) stored instead, in words.

Version 2 added ``path``, ``line`` and ``made`` to nodes, ``modules`` to the graph,
``packed`` to saved values, ``hooked_from`` to edges, ``before_hooks`` to backward steps, ``count`` to ops,
and ``layout``, ``nnz`` and ``quantized`` to tensor summaries.

The file is indented JSON with each record short enough (an op call, a tensor
summary, a saved value) on one line.

Which parts depend on the machine or on torch's file layout (``torch_version``,
``device``, ``source``) and which do not is spelled out in ``traces.compare``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from traces.trace import Trace


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    fields = dataclasses.asdict(trace)
    return {"schema_version": fields.pop("schema_version"), **fields}


def trace_to_json(trace: Trace) -> str:
    """The trace as JSON text: indented, with each small record (an op call, a tensor summary,
    a saved value) on one line, which keeps the file short and a diff of two traces readable."""
    return json_text(trace_to_dict(trace)) + "\n"


ONE_LINE = 240  # characters: a value this short is written on one line


def json_text(value: Any, indent: int = 0) -> str:
    text = json.dumps(value)
    if len(text) <= ONE_LINE or not isinstance(value, (dict, list)) or not value:
        return text
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(key)}: {json_text(item, indent + 2)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if all(not isinstance(item, (dict, list)) for item in value):  # numbers: one line, however long
        return text
    items = [inner + json_text(item, indent + 2) for item in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
