"""The graph as a picture (SVG) through Graphviz, drawn like the study note's figure.

What is drawn comes from ``traces.render.drawing``: leaves are green ellipses with
their names and values, functions blue boxes, a model's modules purple boxes
inside dashed clusters; arrows follow the forward pass and carry, after
backward, the gradient that flowed back along them. Hovering a box shows the
line of code that made it. The ``graphviz`` package writes the DOT source;
Graphviz's ``dot`` program draws it.
"""

from __future__ import annotations

import shutil

from traces.data.trace import Trace
from traces.render.drawing import Box, Drawing, drawing

NO_DOT = "Graphviz's dot program is not installed, so no SVG was drawn (apt-get install graphviz)"

STYLES = {
    "leaf": {"shape": "ellipse", "fillcolor": "#dff5df", "color": "#2e7d32"},
    "function": {"shape": "box", "fillcolor": "#e3ecff", "color": "#3454a4"},
    "module": {"shape": "box", "fillcolor": "#f1e8fb", "color": "#8a5cc2", "style": "filled,rounded"},
}


def dot_available() -> bool:
    return shutil.which("dot") is not None


def to_dot(trace: Trace, depth: int | None = None) -> str:
    """The DOT source of the trace's picture."""
    return dot_source(drawing(trace, depth))


def dot_source(picture_of: Drawing) -> str:
    import graphviz

    picture = graphviz.Digraph(
        picture_of.title,
        graph_attr={"rankdir": "LR" if picture_of.left_to_right else "TB", "fontname": "Helvetica", "newrank": "true", "nodesep": "0.15"},
    )
    picture.attr("node", fontname="Helvetica", style="filled")
    picture.attr("edge", fontname="Helvetica", fontsize="10", color="#555555")
    if picture_of.empty:
        picture.node("empty", picture_of.empty, shape="plaintext")
        return picture.source

    # Nested clusters, one per module around a box: a tree of subgraphs, built without recursion.
    tree: dict[tuple[str, ...], list[Box]] = {}
    for box in picture_of.boxes:
        for level in range(len(box.cluster) + 1):
            tree.setdefault(box.cluster[:level], [])
        tree[box.cluster].append(box)
    subgraphs = {(): picture}
    opened = []
    for path in sorted(tree, key=len):
        if path:
            subgraph = graphviz.Digraph(name=f"cluster_{'/'.join(path)}")
            subgraph.attr(label=path[-1], style="rounded,dashed", color="#8a5cc2", fontcolor="#8a5cc2")
            subgraphs[path] = subgraph
            opened.append(path)
        for box in tree[path]:
            attributes = {key: value for key, value in STYLES[box.kind].items()}
            if box.tooltip:
                attributes["tooltip"] = box.tooltip
            subgraphs[path].node(box.id, box.label, **attributes)
    for path in sorted(opened, key=len, reverse=True):  # innermost first, into the one around it
        subgraphs[path[:-1]].subgraph(subgraphs[path])
    for arrow in picture_of.arrows:
        picture.edge(arrow.source, arrow.target, label=arrow.label, fontcolor="#b26a00")
    return picture.source


def to_svg(trace: Trace, depth: int | None = None) -> str:
    """Draw the trace's graph with ``dot``; raises FileNotFoundError when dot is missing."""
    if not dot_available():
        raise FileNotFoundError(NO_DOT)
    import graphviz

    return graphviz.Source(to_dot(trace, depth)).pipe(format="svg", encoding="utf-8")
