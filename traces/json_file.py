"""The JSON form of a trace: the one machine-readable form, read by the tests.

Schema (``schema_version`` 1); every key is always present:

- ``schema_version``: 1
- ``scenario``: the scenario's name, e.g. ``"backward"``
- ``torch_version``, ``device``: where it ran
- ``graph``: ``null`` when the scenario ran no backward, else
  - ``outputs``: ids of the output tensors' nodes
  - ``nodes``: ``{id, name, variable, leaf, saved}``; ``leaf`` is ``null`` for a
    function node and a tensor summary for ``AccumulateGrad``; ``saved`` lists
    ``{name, shape, dtype, value, freed}`` for each ``_saved_*`` attribute
  - ``edges``: ``{source, target, output_nr, input_nr, gradient}``: gradient flows
    from ``source`` to ``target``; ``gradient`` is the tensor summary that flowed
- ``backward``: the steps in the order the engine ran them:
  ``{order, node, name, arriving, leaving}`` (lists of tensor summaries or ``null``)
- ``facts``: what the scenario's lesson function returned

A tensor summary is ``{shape, dtype, values, norm}``: ``values`` for tensors of at
most 16 elements, ``norm`` for larger floating-point tensors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from traces.trace import Trace


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    fields = dataclasses.asdict(trace)
    return {"schema_version": fields.pop("schema_version"), **fields}


def save_json(trace: Trace, directory: Path) -> Path:
    """Write ``directory/<scenario>.json``; an interrupted write leaves no half file."""
    return write_atomically(
        Path(directory) / f"{trace.scenario}.json",
        json.dumps(trace_to_dict(trace), indent=2) + "\n",
    )


def write_atomically(path: Path, text: str) -> Path:
    """Write to a temporary file beside ``path``, then replace ``path`` with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path
