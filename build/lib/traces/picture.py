"""The graph as a picture (SVG) through Graphviz, drawn like the study note's figure.

Leaves are green ellipses with their names and values, functions blue boxes;
arrows follow the forward pass and carry, after backward, the gradient that
flowed back along them; a model's nodes sit in a box per module. The
``graphviz`` package writes the DOT source; Graphviz's ``dot`` program draws it.
"""

from __future__ import annotations

import shutil

from traces.mermaid import node_label
from traces.trace import Trace

NO_DOT = "Graphviz's dot program is not installed, so no SVG was drawn (apt-get install graphviz)"


def dot_available() -> bool:
    return shutil.which("dot") is not None


def to_dot(trace: Trace) -> str:
    """The DOT source of the trace's graph."""
    import graphviz

    picture = graphviz.Digraph(trace.scenario, graph_attr={"rankdir": "LR", "fontname": "Helvetica"})
    picture.attr("node", fontname="Helvetica", style="filled")
    picture.attr("edge", fontname="Helvetica", fontsize="10", color="#555555")
    graph = trace.graph
    if graph is None:
        picture.node("empty", "this run recorded no backward pass", shape="plaintext")
        return picture.source

    modules: dict[str, list] = {}
    for node in graph.nodes:
        modules.setdefault(node.module or "", []).append(node)
    for module, nodes in modules.items():
        if module:
            with picture.subgraph(name=f"cluster_{module}") as box:
                box.attr(label=module, style="rounded,dashed", color="#8a5cc2", fontcolor="#8a5cc2")
                for node in nodes:
                    add_node(box, node)
        else:
            for node in nodes:
                add_node(picture, node)
    for edge in graph.edges:
        label = f"grad {edge.gradient}" if edge.gradient else ""
        picture.edge(edge.target, edge.source, label=label, fontcolor="#b26a00")
    return picture.source


def add_node(picture, node) -> None:
    if node.is_leaf:
        picture.node(node.id, node_label(node), shape="ellipse", fillcolor="#dff5df", color="#2e7d32")
    else:
        picture.node(node.id, node_label(node), shape="box", fillcolor="#e3ecff", color="#3454a4")


def to_svg(trace: Trace) -> str:
    """Draw the trace's graph with ``dot``; raises FileNotFoundError when dot is missing."""
    if not dot_available():
        raise FileNotFoundError(NO_DOT)
    import graphviz

    return graphviz.Source(to_dot(trace)).pipe(format="svg", encoding="utf-8")
