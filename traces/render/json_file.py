"""The JSON form of a trace: the one machine-readable form, read by the tests.

Schema (``schema_version`` 6); every key is always present:

- ``schema_version``: 6 (version 1 had no ``version`` in ``saved``; version 2
  wrote absolute paths, 3 writes them as ``traces.basics.paths`` says; 4 adds ``derivative``,
  ``values``, ``torch_commit``, ``kernels`` and ``native_skipped``; 5 adds the
  fields listed at the end; 6 writes NaN and infinities as strings, adds
  ``files``, writes no absolute path, in facts either, and adds the fields
  listed at the end)
- ``scenario``: the scenario's name, e.g. ``"backward"`` (for ``python -m traces``,
  the script's name; for ``traces.record()``, the name it was given)
- ``torch_version``, ``device``: where it ran
- ``graph``: ``null`` when the run recorded no backward, else
  - ``outputs``: ids of the output tensors' nodes
  - ``nodes``: ``{id, name, variable, leaf, saved, module, path, line, made,
    derivative}``; ``leaf`` is ``null`` for a function node and a tensor summary for
    ``AccumulateGrad``; ``saved`` lists ``{name, shape, dtype, value, freed, packed,
    version, version_now, values}`` for each ``_saved_*`` attribute (a custom
    ``autograd.Function``'s ``ctx.saved_tensors`` as ``tensors[0]``, ...):
    ``version`` is the version counter (``_version``) a saved tensor was saved at,
    the one backward checks, and ``version_now`` its version when the graph was
    walked where that differs (changed in place since: backward will raise), else
    ``null``; ``values`` a small saved tensor's numbers, else ``null``; ``packed``
    what a saved-tensor pack hook (``torch.utils.checkpoint``, offloading) stored
    instead, in words; ``module`` names the ``nn.Module`` whose forward made the
    node, or ``null``; ``path`` and ``line`` give the line of the user's code that
    made the node (the innermost frame outside torch), or ``null`` (always for
    ``AccumulateGrad``); ``made`` is the order autograd made the nodes in (0 for
    the first), ``null`` for ``AccumulateGrad``; ``derivative`` says what computes
    the node's gradients (below)
  - ``edges``: ``{source, target, output_nr, input_nr, gradient, hooked_from}``:
    gradient flows from ``source`` to ``target``; ``gradient`` is the tensor summary
    that flowed (for an edge that alone feeds its input, what arrived, after any
    tensor hook); ``hooked_from`` is what the source sent when a tensor hook
    changed it on the way, else ``null``
  - ``modules``: the modules named in ``nodes`` and the modules they sit in, in
    the order they were first called: ``{name, kind, parent, path, line}``;
    ``kind`` is the class, ``parent`` the name of the module it sits in (``null``
    for an outermost one), ``path`` and ``line`` where the user's code first called it
    in the traced pass; several models are each named by the user's variable, and the
    modules inside by paths after it (``D``, ``D.0``)
  - ``inputs``: the ids of the nodes whose gradients the call asked for
    (``torch.autograd.grad``'s inputs, or ``backward(inputs=...)``), ``null`` for
    every leaf's ``.grad``; ``returns``: ``true`` where the call returns the
    gradients (``torch.autograd.grad``) and leaves ``.grad`` as it was
- ``backward``: the steps in the order the engine ran them:
  ``{order, node, name, arriving, leaving, before_hooks, time_ns}`` (lists of tensor
  summaries or ``null``): ``arriving`` after any tensor hooks, ``before_hooks``
  what was sent (summed over the edges feeding it) where a hook changed it;
  ``time_ns`` the node's wall time in nanoseconds (``time.perf_counter_ns``, from
  the end of its pre-hook to the start of its hook: the tracer's own work is not
  counted, the ops view's dispatch mode is), or ``null`` where it did not finish
- ``ops``: every ATen operator call, in order: ``{phase, op, inputs, outputs, count,
  backward_pass}``, ``phase`` being ``"forward"`` or ``"backward"`` of the backward
  pass numbered ``backward_pass`` (1 for the first; the traced pass is the last,
  and its forward runs from the end of the pass before it, or the start of the run,
  to the traced backward), ``inputs`` and ``outputs`` lists of ``{shape, dtype}``;
  ``count`` calls in a row with the same op, phase, pass and shapes are folded into one entry
- ``source``: torch's Python functions entered, in first-entry order:
  ``{function, path, line, depth, calls, building}``; ``path`` is relative to the folder
  torch is installed in, e.g. ``torch/autograd/__init__.py``; ``building`` is true
  for a function entered only inside an ``nn.Module``'s ``__init__`` (building a model)
- ``source_skipped``: why ``source`` is empty (a debugger owned tracing), or ``null``
- ``facts``: what the scenario's lesson function returned (a fact whose name ends
  in ``_path`` is a path, written like every other one)
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
- ``files``: for a JSON saved as part of a set (``traces.render.files.save_trace``), the
  other files of its set, ``{file name: sha256 of its bytes}``; ``{}`` otherwise.
  A reader checks them (``traces.render.files.set_problems``): a picture whose hash
  differs is not of this trace

Strict JSON: a number that is NaN or infinite (a NaN gradient) is written as
the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` where the number would
be (bare ``NaN`` is not JSON: browsers and ``jq`` reject it);
``traces.render.compare.number`` reads either form back as a float.

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

A tensor summary is ``{shape, dtype, values, norm, layout, nnz, quantized}``:
``values`` for tensors of at most 16 elements (a complex number as ``[real,
imaginary]``; a quantized tensor's values dequantized), ``norm`` for larger
floating-point and complex tensors; ``layout`` (``"sparse_coo"``, ...) and
``nnz`` (stored entries, an index stored twice counted twice, as ``_nnz()`` counts
them) for a sparse tensor, which keeps its ``norm`` but no
values; ``quantized`` (e.g. ``"per_tensor_affine scale=0.1 zero_point=0"``) for a
quantized one.

Version 5 added ``path``, ``line`` and ``made`` to nodes, ``modules`` to the graph,
``packed`` and ``version_now`` to saved values, ``hooked_from`` to edges,
``before_hooks`` to backward steps, ``count`` to ops, and ``layout``, ``nnz`` and
``quantized`` to tensor summaries.

Version 6 added ``inputs`` and ``returns`` to the graph (and ``nnz`` became the stored
count; it had been the coalesced one), and ``backward_pass`` to ops (before it, the ops of the passes before the
traced one were all labelled ``"forward"``).

Every path (each ``path``, and each fact whose name ends in ``_path``) goes
through ``traces.basics.paths.portable_path``, and so does every absolute path named
inside a fact's text (the quickstart's ``data`` sentence), so that a saved trace
holds nothing particular to the machine that wrote it: no user name, no
virtual environment's folder, no absolute path. The terminal shows the absolute paths.

The file is indented JSON with each record short enough (an op call, a tensor
summary, a saved value) on one line.

Which parts depend on the machine or on torch's file layout (``torch_version``,
``device``, ``source``) and which do not is spelled out in ``traces.render.compare``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from traces.basics.paths import portable_path
from traces.data.trace import Trace

# An absolute path inside a sentence: a word that starts with a separator, up to the next space or bracket.
ABSOLUTE_IN_TEXT = re.compile(r"(?<![^\s(\"'=])/[^\s,;()<>'\"]+")


def trace_to_dict(trace: Trace, files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The trace as plain values, every path portable and every number valid JSON;
    ``files`` names the other files of its set (see ``files`` in the schema)."""
    fields = strict_numbers(with_portable_paths(dataclasses.asdict(trace)))
    fields["facts"] = {name: portable_text(value) for name, value in fields["facts"].items()}
    return {"schema_version": fields.pop("schema_version"), **fields, "files": dict(files or {})}


def strict_numbers(value: Any) -> Any:
    """``value`` with each NaN or infinite float as ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: strict_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_numbers(item) for item in value]
    return value


def portable_text(value: Any) -> Any:
    """A fact with every absolute path inside its text (at any depth) written as ``portable_path`` writes it."""
    if isinstance(value, str):
        return ABSOLUTE_IN_TEXT.sub(lambda found: portable_path(found.group()), value)
    if isinstance(value, dict):
        return {key: portable_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable_text(item) for item in value]
    return value


def with_portable_paths(value: Any) -> Any:
    """``value`` with every path in it (a ``path``, or anything named ``*_path``) made portable."""
    if isinstance(value, dict):
        return {
            key: portable_path(item) if isinstance(item, str) and key.endswith("path") else with_portable_paths(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [with_portable_paths(item) for item in value]
    return value


def trace_to_json(trace: Trace, files: Mapping[str, str] | None = None) -> str:
    """The trace as JSON text: indented, with each small record (an op call, a tensor summary,
    a saved value) on one line, which keeps the file short and a diff of two traces readable."""
    return json_text(trace_to_dict(trace, files)) + "\n"


ONE_LINE = 240  # characters: a value this short (with its key and a comma) is written on one line


def json_text(value: Any, indent: int = 0, key: str = "") -> str:
    """``value`` as JSON, after ``key`` (``"name": ``) on a line indented by ``indent``."""
    text = json.dumps(value, allow_nan=False)  # strict JSON: trace_to_dict wrote NaN as a string
    if len(key) + len(text) < ONE_LINE or not isinstance(value, (dict, list)) or not value:
        return key + text
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        items = [inner + json_text(item, indent + 2, f"{json.dumps(name)}: ") for name, item in value.items()]
        return key + "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if all(not isinstance(item, (dict, list)) for item in value):  # numbers: one line, however long
        return key + text
    items = [inner + json_text(item, indent + 2) for item in value]
    return key + "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
