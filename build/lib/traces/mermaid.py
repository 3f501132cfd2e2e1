"""The graph as a Mermaid flowchart: renders on GitHub and in VSCode's Markdown preview.

Arrows point the way the forward pass went (from the leaves to the output);
each carries the gradient that flowed back along it. Leaves are green
rounded boxes with their names and values; the nodes a model's modules made
are grouped in a box per module.
"""

from __future__ import annotations

from traces.graph import AutogradGraph, AutogradNode
from traces.trace import Trace


def quoted(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def node_label(node: AutogradNode) -> str:
    if node.is_leaf:
        name = node.variable or "leaf"
        if node.leaf.values is None:  # too large to show: shape and dtype instead
            return f"{name}: {node.leaf.dtype}{node.leaf.shape}"
        return f"{name} = {node.leaf}"
    return f"{node.variable} = {node.name}" if node.variable else node.name


def node_line(node: AutogradNode) -> str:
    label = quoted(node_label(node))
    return f"{node.id}([{label}])" if node.is_leaf else f"{node.id}[{label}]"


def to_mermaid(trace: Trace) -> str:
    graph: AutogradGraph | None = trace.graph
    lines = ["flowchart LR"]
    if graph is None:
        lines.append('  empty["this run recorded no backward pass"]')
        return "\n".join(lines) + "\n"

    modules: dict[str, list[AutogradNode]] = {}
    for node in graph.nodes:
        if node.module:
            modules.setdefault(node.module, []).append(node)
        else:
            lines.append("  " + node_line(node))
    for number, (module, nodes) in enumerate(modules.items()):
        lines.append(f"  subgraph module{number}[{quoted(module)}]")
        lines.extend("    " + node_line(node) for node in nodes)
        lines.append("  end")

    for edge in graph.edges:
        label = f"|{quoted('grad ' + str(edge.gradient))}|" if edge.gradient else ""
        lines.append(f"  {edge.target} -->{label} {edge.source}")

    lines.append("  classDef leaf fill:#dff5df,stroke:#2e7d32")
    lines.append("  classDef function fill:#e3ecff,stroke:#3454a4")
    leaves = [node.id for node in graph.nodes if node.is_leaf]
    functions = [node.id for node in graph.nodes if not node.is_leaf]
    if leaves:
        lines.append(f"  class {','.join(leaves)} leaf")
    if functions:
        lines.append(f"  class {','.join(functions)} function")
    return "\n".join(lines) + "\n"
