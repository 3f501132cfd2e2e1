"""A model's graph grouped by ``nn.Module``, for the views that have to fit a screen.

The module tree comes from ``AutogradGraph.modules``; each node sits in the
module that made it (``AutogradNode.module``). Shown down to a depth (an
outermost module is depth 0, ``layer1`` 1, ``layer1.0`` 2), each module below
it stands for all of its nodes. Siblings with the same structure (the same
classes of module and node, whatever the shapes) are folded into the first.
Nodes that no module made are grouped by the line of code that made them.

Renderers read these groups; nothing here changes the graph.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from traces.data.graph import AutogradGraph, AutogradNode, ModuleInfo
from traces.data.tensors import TensorSummary

# Graphs with at most this many nodes are shown node by node; larger ones by module.
NODE_BY_NODE = 40
DEFAULT_DEPTH = 2


def grouped(graph: AutogradGraph, depth: int | None) -> bool:
    """Whether views show ``graph`` by module: when asked for a depth, or when it is too large to list."""
    return depth is not None or len(graph.nodes) > NODE_BY_NODE


@dataclass
class ModuleGroup:
    """A module and the nodes it made, its own and those of the modules inside it."""

    name: str
    kind: str
    depth: int
    location: str | None = None  # the line of the user's code that first called it
    children: list[ModuleGroup] = field(default_factory=list)
    own: list[AutogradNode] = field(default_factory=list)  # made by this module, not by one inside it

    def nodes(self) -> Iterator[AutogradNode]:
        """Every node of this module and of the modules inside it (without recursion)."""
        stack = [self]
        while stack:
            group = stack.pop()
            yield from group.own
            stack.extend(reversed(group.children))

    @property
    def title(self) -> str:
        return f"{self.name} ({self.kind})" if self.kind != self.name else self.name


def module_tree(graph: AutogradGraph) -> list[ModuleGroup]:
    """The outermost modules, each with the modules and nodes inside it, in the order they were called."""
    groups: dict[str, ModuleGroup] = {}
    roots: list[ModuleGroup] = []
    infos = {info.name: info for info in graph.modules}
    for node in graph.nodes:  # a module the graph does not describe (an older trace): outermost
        if node.module and node.module not in infos:
            infos[node.module] = ModuleInfo(node.module, node.module)
    for info in infos.values():
        depth = 0
        parent = info.parent
        while parent is not None and parent in infos:
            depth += 1
            parent = infos[parent].parent
        groups[info.name] = ModuleGroup(info.name, info.kind, depth, info.location)
    for info in infos.values():
        if info.parent is not None and info.parent in groups:
            groups[info.parent].children.append(groups[info.name])
        else:
            roots.append(groups[info.name])
    for node in graph.nodes:
        if node.module:
            groups[node.module].own.append(node)
    return roots


def structure(group: ModuleGroup) -> tuple:
    """What two modules must share to be folded as "the same structure": classes of modules and nodes."""
    signature = []
    stack = [(group, 0)]
    while stack:  # a walk, not recursion: a module tree can be deep
        current, level = stack.pop()
        signature.append((level, current.kind, tuple(sorted(Counter(n.name for n in current.own).items()))))
        stack.extend((child, level + 1) for child in reversed(current.children))
    return tuple(signature)


@dataclass
class Fold:
    """A run of siblings with the same structure: the first is shown, the rest named."""

    first: ModuleGroup
    same: list[ModuleGroup] = field(default_factory=list)


def folded(groups: list[ModuleGroup]) -> list[Fold]:
    """Consecutive siblings with the same structure, folded into the first of each run."""
    folds: list[Fold] = []
    for group in groups:
        if folds and structure(folds[-1].first) == structure(group):
            folds[-1].same.append(group)
        else:
            folds.append(Fold(group))
    return folds


def kinds(nodes: list[AutogradNode]) -> str:
    """``ConvolutionBackward0 x2, ReluBackward0``: the classes of some nodes, counted, in the order
    they were made (``AccumulateGrad``, which has no place in that order, last)."""
    made = sorted(nodes, key=lambda node: (node.made is None, node.made or 0))
    counts = Counter(node.name for node in made)
    return ", ".join(name if count == 1 else f"{name} x{count}" for name, count in counts.items())


def display_groups(graph: AutogradGraph, depth: int) -> dict[str, str]:
    """Node id -> the group it is shown in at ``depth``: the name of its module, cut to that depth,
    or for a node no module made, the line of code that made it (``"line script.py:12"``)."""
    cut: dict[str, str] = {}
    infos = {info.name: info for info in graph.modules}

    def ancestry(name: str) -> list[str]:
        chain = [name]
        while name in infos and infos[name].parent is not None and infos[name].parent in infos:
            name = infos[name].parent
            chain.append(name)
        return chain[::-1]  # outermost first

    for node in graph.nodes:
        if node.module:
            if node.module not in cut:
                chain = ancestry(node.module)
                cut[node.module] = chain[min(depth, len(chain) - 1)]
            group = cut[node.module]
        elif node.location:
            group = f"line {node.location}"
        else:
            group = f"node {node.id}"
        cut.setdefault(f"node:{node.id}", group)
    return {node.id: cut[f"node:{node.id}"] for node in graph.nodes}


def opened_modules(graph: AutogradGraph, depth: int) -> set[str]:
    """The modules shown open at ``depth``: those above it that hold other modules; their own
    nodes are shown apart from those of the modules inside them."""
    parents = {info.name: info.parent for info in graph.modules}

    def level(name: str) -> int:
        count = 0
        while parents.get(name) is not None:
            name = parents[name]
            count += 1
        return count

    return {parent for parent in parents.values() if parent is not None and level(parent) < depth}


def first_made(nodes: list[AutogradNode]) -> AutogradNode | None:
    """The node made first (lowest sequence number): where a module's forward started."""
    numbered = [node for node in nodes if node.made is not None]
    return min(numbered, key=lambda node: node.made) if numbered else None


def summary_norm(summary: TensorSummary | None) -> float | None:
    """The 2-norm of a summarised tensor: recorded for large ones, computed from the values of small ones."""
    if summary is None:
        return None
    if summary.norm is not None:
        return summary.norm
    if summary.values is None:
        return None
    total = 0.0
    stack = [summary.values]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            if len(value) == 2 and summary.dtype.startswith("complex") and not isinstance(value[0], list):
                total += value[0] ** 2 + value[1] ** 2  # a complex number, saved as [real, imaginary]
            else:
                stack.extend(value)
        elif isinstance(value, (int, float)):
            total += float(value) ** 2
    return math.sqrt(total)


def gradient_norms(trace_backward, graph: AutogradGraph) -> dict[str, float]:
    """Node id -> the norm of the gradient that arrived at each AccumulateGrad (what went into ``.grad``)."""
    norms = {}
    leaves = {node.id for node in graph.nodes if node.is_leaf}
    for step in trace_backward:
        if step.node in leaves and step.arriving:
            norm = summary_norm(step.arriving[0])
            if norm is not None:
                norms[step.node] = norm
    return norms


def combined_norm(norms: list[float]) -> float | None:
    """The norm of several tensors taken together."""
    return math.sqrt(sum(norm * norm for norm in norms)) if norms else None
