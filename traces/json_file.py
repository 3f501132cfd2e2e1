"""The JSON form of a trace: the one machine-readable form, read by the tests.

Schema (``schema_version`` 4); every key is always present:

- ``schema_version``: 4 (version 1 had no ``version`` in ``saved``; version 2
  wrote absolute paths, 3 writes them as ``traces.paths`` says; 4 adds ``derivative``,
  ``values``, ``torch_commit``, ``kernels`` and ``native_skipped``)
- ``scenario``: the scenario's name, e.g. ``"backward"``
- ``torch_version``, ``device``: where it ran
- ``graph``: ``null`` when the scenario ran no traced backward, else
  - ``outputs``: ids of the output tensors' nodes
  - ``nodes``: ``{id, name, variable, leaf, saved, module, derivative}``; ``leaf``
    is ``null`` for a function node and a tensor summary for ``AccumulateGrad``;
    ``saved`` lists ``{name, shape, dtype, value, freed, version, values}`` for each
    ``_saved_*`` attribute; ``version`` is a saved tensor's version counter
    (``_version``) when the graph was walked, which is the version it was saved at
    (``null`` for a value that is not a tensor, or one freed before the walk);
    ``values`` a small saved tensor's numbers, else ``null``;
    ``module`` names the ``nn.Module`` whose forward made the node, or ``null``;
    ``derivative`` says what computes the node's gradients (below)
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
- ``torch_commit``: the commit (or release tag) of PyTorch's repository that
  every ``url`` points at
- ``kernels``: what ran below each ATen operator, one entry per phase and
  operator in first-call order: ``{op, phase, schema, source,
  structured_delegate, device_key, kernel, kernel_entry, kernel_key, symbol,
  registered, dispatch, cpp_path, note}``: the ``native_functions.yaml`` entry
  (``source``), the kernel it names for the call's backend key
  (``device_key``, e.g. ``"CPU"``) and the entry and key it is listed under, the
  C++ ``symbol`` to break on, where the dispatcher has that kernel
  ``registered``, and ``dispatch``: the keys the call went through, highest
  priority first, ``{key, kernel, fallthrough, registered}``. ``schema``,
  ``source`` and the kernel are ``null`` for an operator that is not in
  ``native_functions.yaml`` (``note`` says so). ``cpp_path`` is ``null``
  unless the trace was taken with ``--native``; then it lists the C++ frames
  from the last Python line to where the dispatcher handed the call to the
  trace, grouped as ``{layer, functions, folded}`` (``folded``: frames of
  plumbing not listed)
- ``native_skipped``: why ``cpp_path`` is ``null``, or ``null``

A node's ``derivative`` is ``{kind, summary, op, schema, inputs, formulas,
source}``: ``kind`` is ``"formula"`` (generated from ``derivatives.yaml``: ``op``
and ``schema`` name the entry, ``inputs`` the inputs in the order of the node's
edges, ``formulas`` lists ``{inputs, formula, plain}`` with the formula as the
yaml writes it and, for common ones, ``plain``: the same in plain terms for real
tensors), ``"c++"`` (written by hand, such as ``AccumulateGrad``), ``"custom"``
(a ``torch.autograd.Function``), ``"compiled"`` (a ``torch.compile`` region) or
``"unknown"``; ``summary`` says it in one line.

A ``source`` or ``registered`` place is ``{path, line, kind, url, template,
template_url}``: ``path`` in PyTorch's repository; ``kind`` ``"repository"``
(``url`` on GitHub at ``torch_commit``), ``"generated"`` (written while torch
was built, so not in the repository and without ``url``; ``template`` is the
repository file it is generated from) or ``"elsewhere"`` (outside PyTorch).

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
