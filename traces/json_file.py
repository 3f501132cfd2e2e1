"""The JSON form of a trace: the one machine-readable form, read by the tests.

Schema (``schema_version`` 3); every key is always present:

- ``schema_version``: 3 (version 1 had no ``version`` in ``saved``; version 2
  wrote absolute paths, 3 writes them as ``traces.paths`` says)
- ``scenario``: the scenario's name, e.g. ``"backward"``
- ``torch_version``, ``device``: where it ran
- ``graph``: ``null`` when the scenario ran no traced backward, else
  - ``outputs``: ids of the output tensors' nodes
  - ``nodes``: ``{id, name, variable, leaf, saved, module}``; ``leaf`` is ``null``
    for a function node and a tensor summary for ``AccumulateGrad``; ``saved``
    lists ``{name, shape, dtype, value, freed, version}`` for each ``_saved_*``
    attribute; ``version`` is a saved tensor's version counter (``_version``) when the
    graph was walked, which is the version it was saved at (``null`` for a value that
    is not a tensor, or one freed before the walk);
    ``module`` names the ``nn.Module`` whose forward made the node, or ``null``
  - ``edges``: ``{source, target, output_nr, input_nr, gradient}``: gradient flows
    from ``source`` to ``target``; ``gradient`` is the tensor summary that flowed
- ``backward``: the steps in the order the engine ran them:
  ``{order, node, name, arriving, leaving}`` (lists of tensor summaries or ``null``)
- ``ops``: every ATen operator call, in order: ``{phase, op, inputs, outputs}``,
  ``phase`` being ``"forward"`` (from the start of the run to the traced
  backward) or ``"backward"``, ``inputs`` and ``outputs`` lists of ``{shape, dtype}``
- ``source``: torch's Python functions entered, in first-entry order:
  ``{function, path, line, depth, calls}``; ``path`` is relative to the folder
  torch is installed in, e.g. ``torch/autograd/__init__.py``
- ``source_skipped``: why ``source`` is empty (a debugger owned tracing), or ``null``
- ``facts``: what the scenario's lesson function returned (a fact whose name ends
  in ``_path`` is a path, written like every other one)

Every path goes through ``traces.paths.portable_path``, so that a saved trace
holds nothing particular to the machine that wrote it: no user name, no
virtual environment's folder. The terminal shows the absolute paths.

A tensor summary is ``{shape, dtype, values, norm}``: ``values`` for tensors of at
most 16 elements, ``norm`` for larger floating-point tensors.

Which parts depend on the machine or on torch's file layout (``torch_version``,
``device``, ``source``) and which do not is spelled out in ``traces.compare``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from traces.paths import portable_path
from traces.trace import Trace


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    fields = dataclasses.asdict(trace)
    for entry in fields["source"]:
        entry["path"] = portable_path(entry["path"])
    fields["facts"] = {
        name: portable_path(value) if name.endswith("_path") and isinstance(value, str) else value
        for name, value in fields["facts"].items()
    }
    return {"schema_version": fields.pop("schema_version"), **fields}
