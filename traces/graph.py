"""The graph view: the autograd graph behind some output tensors, as plain data.

Every tensor made by a differentiable operation has a ``grad_fn``: the autograd
node that will compute its gradient. Each node lists, in ``next_functions``, the
nodes that its gradients flow on to. Following those links from an output reaches
every node; a leaf tensor that requires grad appears as an ``AccumulateGrad``
node, whose ``variable`` is the leaf itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import _disable_current_modes

from traces.native import NodeDerivative
from traces.tensors import MAX_VALUES, TensorSummary, dtype_name, summarize, tracer_at_work

# What autograd says when a saved tensor is read after backward freed it.
FREED_MESSAGE = "after they have already been freed"


@dataclass
class SavedValue:
    """One value a node saved during forward for use in backward (``_saved_<name>``)."""

    name: str
    shape: list[int] | None = None  # for a saved tensor
    dtype: str | None = None  # for a saved tensor
    value: str | None = None  # for anything else (a scalar, a size), as text
    freed: bool = False  # backward already released it
    # For a saved tensor, its version counter (``_version``) when the graph was walked.
    # ``_saved_<name>`` can be read only while that still equals the version the node
    # saved it at (the check backward makes too), so it is also the saved version.
    version: int | None = None
    values: float | list | None = None  # a small saved tensor's values (for the formula's numbers)


@dataclass
class AutogradNode:
    id: str
    name: str  # the node's class, e.g. "MulBackward0" or "AccumulateGrad"
    variable: str | None = None  # the scenario's name for the tensor behind the node
    leaf: TensorSummary | None = None  # for AccumulateGrad: the leaf tensor
    saved: list[SavedValue] = field(default_factory=list)
    module: str | None = None  # the nn.Module whose forward made the node, where known
    derivative: NodeDerivative | None = None  # what computes its gradients (traces.native), once traced

    @property
    def is_leaf(self) -> bool:
        return self.leaf is not None

    @property
    def label(self) -> str:
        return f"{self.variable} ({self.name})" if self.variable else self.name


@dataclass
class Edge:
    """Gradient flows from ``source`` to ``target`` along an edge."""

    source: str
    target: str
    output_nr: int  # position in the source's next_functions
    input_nr: int  # which input of the target the gradient is for
    gradient: TensorSummary | None = None  # filled in by a recorded backward


@dataclass
class AutogradGraph:
    outputs: list[str]  # ids of the output tensors' nodes
    nodes: list[AutogradNode]
    edges: list[Edge]

    def node(self, node_id: str) -> AutogradNode:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def edges_from(self, node_id: str) -> list[Edge]:
        return [edge for edge in self.edges if edge.source == node_id]


def autograd_nodes(outputs: Mapping[str, torch.Tensor]) -> list:
    """Every autograd node reachable from the outputs, each once, breadth first."""
    found: dict[int, object] = {}  # id -> node; the dict keeps nodes alive, so ids stay unique
    queue = [tensor.grad_fn for tensor in outputs.values() if tensor.grad_fn is not None]
    while queue:
        fn = queue.pop(0)
        if id(fn) in found:
            continue
        found[id(fn)] = fn
        queue.extend(next_fn for next_fn, _ in fn.next_functions if next_fn is not None)
    return list(found.values())


def walk_graph(
    outputs: Mapping[str, torch.Tensor],
    names: Mapping[str, torch.Tensor] | None = None,
    module_of: Mapping[int, str] | None = None,
) -> AutogradGraph:
    """Describe the autograd graph behind ``outputs`` (name -> tensor).

    ``names`` gives names to other tensors of the scenario (leaves and
    intermediate results), so that nodes carry the names used in the code.
    ``module_of`` maps ``id(node)`` to the module that made it (see ``traces.modules``).
    """
    return describe_graph(autograd_nodes(outputs), outputs, names, module_of)


def describe_graph(
    fns: list,
    outputs: Mapping[str, torch.Tensor],
    names: Mapping[str, torch.Tensor] | None = None,
    module_of: Mapping[int, str] | None = None,
) -> AutogradGraph:
    named = {**(names or {}), **outputs}
    name_of = {}  # id of a grad_fn, or of a leaf tensor -> its name
    for name, tensor in named.items():
        name_of[id(tensor.grad_fn if tensor.grad_fn is not None else tensor)] = name
    node_ids = {id(fn): f"n{index}" for index, fn in enumerate(fns)}

    nodes, edges = [], []
    for fn in fns:
        leaf = getattr(fn, "variable", None)  # only AccumulateGrad has one
        nodes.append(
            AutogradNode(
                id=node_ids[id(fn)],
                name=type(fn).__name__,
                variable=name_of.get(id(leaf if leaf is not None else fn)),
                leaf=summarize(leaf) if leaf is not None else None,
                saved=read_saved_values(fn),
                module=(module_of or {}).get(id(fn)),
            )
        )
        for output_nr, (next_fn, input_nr) in enumerate(fn.next_functions):
            if next_fn is not None:  # None: an input that needs no gradient
                edges.append(Edge(node_ids[id(fn)], node_ids[id(next_fn)], output_nr, input_nr))
    output_ids = [node_ids[id(t.grad_fn)] for t in outputs.values() if t.grad_fn is not None]
    return AutogradGraph(outputs=output_ids, nodes=nodes, edges=edges)


def small_values(tensor: torch.Tensor) -> float | list | None:
    """A small saved tensor's values (the numbers of its node's formula), else None.

    Read with dispatch modes off: under the ops view's mode, a wrapped number
    (the 2 saved by ``x * 2``) reaches the mode as a plain Python number, which
    no operator accepts as a tensor.
    """
    if tensor.numel() > MAX_VALUES:
        return None
    with tracer_at_work(), _disable_current_modes():  # the tracer's work: not in the source view either
        return summarize(tensor).values


def read_saved_values(fn) -> list[SavedValue]:
    """What a node saved for backward, read through its ``_saved_*`` attributes."""
    saved = []
    for attribute in sorted(dir(fn)):
        if not attribute.startswith("_saved_"):
            continue
        name = attribute.removeprefix("_saved_")
        try:
            value = getattr(fn, attribute)
        except RuntimeError as error:
            if FREED_MESSAGE not in str(error):
                raise
            saved.append(SavedValue(name, freed=True))
            continue
        if isinstance(value, torch.Tensor):
            saved.append(
                SavedValue(
                    name, shape=list(value.shape), dtype=dtype_name(value), version=value._version, values=small_values(value)
                )
            )
        else:
            saved.append(SavedValue(name, value=repr(value)))
    return saved


@dataclass(frozen=True)
class NotRead:
    """A saved value that was not read, and why."""

    reason: str

    def __str__(self) -> str:
        return self.reason


FREED = NotRead("freed by backward")
PACKED = NotRead("packed by a saved-tensor hook (not unpacked: that would run the hook)")
UNREADABLE = NotRead("not readable without its unpack hook in this torch version")


def saved_for_backward(fn) -> dict[str, object]:
    """What a node saved for backward, by name (``self`` for ``_saved_self``), read
    without running any saved-tensor unpack hook.

    Each value is the tensor as saved, another saved value (a number, a size), or
    a ``NotRead``: FREED once backward released it, PACKED where a
    ``saved_tensors_hooks`` pack hook replaced it. Tensors are read through the
    node's ``_raw_saved_*`` handles (``torch._C._autograd.SavedTensor``), so
    neither an unpack hook nor the in-place version check runs.
    """
    saved: dict[str, object] = {}
    for attribute in sorted(dir(fn)):
        if attribute.startswith("_raw_saved_"):
            name = attribute.removeprefix("_raw_saved_")
            raw = getattr(fn, attribute)
            if isinstance(raw, (list, tuple)):
                saved[name] = [_read_saved_tensor(fn, name, item) for item in raw]
            else:
                saved[name] = _read_saved_tensor(fn, name, raw)
        elif attribute.startswith("_saved_") and not hasattr(fn, "_raw" + attribute):
            # Not a tensor (a number, a size, a bool): no hook can be involved.
            saved[attribute.removeprefix("_saved_")] = getattr(fn, attribute)
    return dict(sorted(saved.items()))


def _read_saved_tensor(fn, name: str, raw) -> object:
    if not hasattr(raw, "unpack_hook") or not hasattr(raw, "data"):
        return UNREADABLE
    if raw.unpack_hook is not None:
        return PACKED
    if raw.data is not None:
        return raw.data
    # No data: released by backward, or nothing was saved (an optional input that was None).
    try:
        return getattr(fn, f"_saved_{name}", None)  # no unpack hook: reading runs none
    except RuntimeError as error:
        if FREED_MESSAGE in str(error):
            return FREED
        raise
