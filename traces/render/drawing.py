"""What the pictures draw (Graphviz's SVG and Mermaid's flowchart alike): boxes, clusters, arrows.

A small graph is drawn node by node, leaves as green ellipses and functions as
blue boxes, each in a dashed cluster for the module that made it. A model's
graph is drawn by module (see ``traces.render.grouping``): one box per module at the
depth shown (with its node count and gradient norm), inside dashed clusters for
the modules around it; nodes outside any module are boxed per line of code.
Arrows follow the forward pass, from inputs to outputs, and carry the gradient
that flowed back along them. Large pictures run top to bottom, so that they are
as narrow as a screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from traces.basics.paths import portable_path
from traces.data.graph import AutogradNode
from traces.data.tensors import TensorSummary
from traces.data.trace import Trace
from traces.render.grouping import (
    DEFAULT_DEPTH,
    combined_norm,
    display_groups,
    gradient_norms,
    grouped,
    opened_modules,
    summary_norm,
)

MAX_LEAF_VALUES = 4  # a leaf with more values is labelled with its dtype and shape
LEFT_TO_RIGHT_UP_TO = 10  # nodes; larger pictures run top to bottom


@dataclass
class Box:
    id: str
    label: str
    kind: str  # "leaf", "function" or "module"
    tooltip: str = ""  # the line of code that made it (or called the module)
    cluster: tuple[str, ...] = ()  # the modules it sits in, outermost first


@dataclass
class Arrow:
    source: str  # the box the forward pass came from
    target: str
    label: str = ""


@dataclass
class Drawing:
    title: str
    left_to_right: bool
    boxes: list[Box] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)
    empty: str | None = None  # what to say instead, when there is no graph


def short(summary: TensorSummary) -> str:
    """A tensor summary for a label: its values when there are a few, else dtype, shape and norm."""
    values = summary.values
    if values is None or (isinstance(values, list) and len(values) > MAX_LEAF_VALUES):
        norm = summary_norm(summary)
        return f"{summary.dtype}{summary.shape}" + ("" if norm is None else f" norm={norm:.4g}")
    return str(summary)


def node_label(node: AutogradNode, inside: str | None = None) -> str:
    """The node's label; in the box of the module ``inside``, a parameter of it is named
    without the module's name (``weight`` in ``linear_relu_stack.0``)."""
    if node.is_leaf:
        name = node.variable or "leaf"
        if inside and name.startswith(inside + "."):
            name = name[len(inside) + 1 :]
        values = node.leaf.values
        if values is None or (isinstance(values, list) and len(values) > MAX_LEAF_VALUES):
            return f"{name}: {node.leaf.dtype}{node.leaf.shape}"
        return f"{name} = {node.leaf}"
    return f"{node.variable} = {node.name}" if node.variable else node.name


def arrow_label(edge) -> str:
    """The gradient that flowed back along an edge; where a tensor hook changed it, what was sent too."""
    if not edge.gradient:
        return ""
    label = f"grad {short(edge.gradient)}"
    return label if edge.hooked_from is None else f"{label} (hook changed it from {short(edge.hooked_from)})"


def tooltip(location: str | None) -> str:
    if not location:
        return ""
    path, _, line = location.rpartition(":")
    return f"{portable_path(path)}:{line}"  # saved in the SVG: no folder of this machine


def module_chain(trace: Trace, name: str | None) -> tuple[str, ...]:
    """The module ``name`` and the modules around it, outermost first."""
    parents = {info.name: info.parent for info in trace.graph.modules}
    chain = []
    while name:
        chain.append(name)
        name = parents.get(name)
    return tuple(reversed(chain))


def drawing(trace: Trace, depth: int | None = None) -> Drawing:
    """The picture of ``trace``: node by node for a small graph, by module down to ``depth`` for a model."""
    graph = trace.graph
    if graph is None:
        return Drawing(trace.scenario, True, empty="this run recorded no backward pass")
    if grouped(graph, depth):
        return module_drawing(trace, DEFAULT_DEPTH if depth is None else depth)
    boxes = [
        Box(
            node.id,
            node_label(node, inside=node.module),
            "leaf" if node.is_leaf else "function",
            tooltip(node.location),
            module_chain(trace, node.module)[-1:],
        )
        for node in graph.nodes
    ]
    arrows = [Arrow(edge.target, edge.source, arrow_label(edge)) for edge in graph.edges]
    return Drawing(trace.scenario, len(graph.nodes) <= LEFT_TO_RIGHT_UP_TO, boxes, arrows)


def module_drawing(trace: Trace, depth: int) -> Drawing:
    graph = trace.graph
    group_of = display_groups(graph, depth)
    norms = gradient_norms(trace.backward, graph)
    infos = {info.name: info for info in graph.modules}
    members: dict[str, list[AutogradNode]] = {}
    for node in graph.nodes:
        members.setdefault(group_of[node.id], []).append(node)
    box_ids = {group: f"g{number}" for number, group in enumerate(members)}
    opened = opened_modules(graph, depth)
    boxes = []
    for group, nodes in members.items():
        count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
        norm = combined_norm([norms[node.id] for node in nodes if node.id in norms])
        details = count + ("" if norm is None else f" · grad norm {norm:.4g}")
        if group in infos:
            info = infos[group]
            if group in opened:  # its own nodes, in its cluster; the modules in it have boxes of their own
                label, cluster = f"{group} itself ({info.kind})\n{details}", module_chain(trace, group)
            else:
                label, cluster = f"{group} ({info.kind})\n{details}", module_chain(trace, info.parent)
            boxes.append(Box(box_ids[group], label, "module", tooltip(info.location), cluster))
        else:  # nodes outside any module, boxed per line of code
            names = [node_label(node) for node in nodes if node.variable and not node.is_leaf]
            label = names[0] if len(names) == 1 and len(nodes) == 1 else "\n".join([*names[:2], details])
            location = nodes[0].location if nodes[0].location else None
            boxes.append(Box(box_ids[group], label, "function", tooltip(location)))
    arrows: dict[tuple[str, str], Arrow] = {}
    for edge in graph.edges:
        source, target = box_ids[group_of[edge.target]], box_ids[group_of[edge.source]]
        if source != target and (source, target) not in arrows:
            arrows[(source, target)] = Arrow(source, target, arrow_label(edge))
    return Drawing(trace.scenario, False, boxes, list(arrows.values()))

