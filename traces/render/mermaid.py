"""The graph as a Mermaid flowchart: renders on GitHub and in VSCode's Markdown preview.

What is drawn comes from ``traces.render.drawing``, as for the SVG: arrows point the
way the forward pass went (from the leaves to the output), each carrying the
gradient that flowed back along it; leaves are green rounded boxes with their
names and values; a model's modules are grouped in a box per module.
"""

from __future__ import annotations

from traces.data.trace import Trace
from traces.render.drawing import Box, drawing

SHAPES = {"leaf": "([{}])", "function": "[{}]", "module": "[{}]"}


def quoted(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("\n", "<br>") + '"'


def node_line(box: Box) -> str:
    return box.id + SHAPES[box.kind].format(quoted(box.label))


def to_mermaid(trace: Trace, depth: int | None = None) -> str:
    picture = drawing(trace, depth)
    lines = ["flowchart LR" if picture.left_to_right else "flowchart TB"]
    if picture.empty:
        lines.append(f"  empty[{quoted(picture.empty)}]")
        return "\n".join(lines) + "\n"

    # Subgraphs nest like the modules: a tree of clusters in the order their boxes come,
    # written depth first (with a stack, not recursion).
    boxes_in: dict[tuple[str, ...], list[Box]] = {(): []}
    inner: dict[tuple[str, ...], list[tuple[str, ...]]] = {(): []}
    for box in picture.boxes:
        for level in range(1, len(box.cluster) + 1):
            path = box.cluster[:level]
            if path not in inner:
                inner[path] = []
                boxes_in[path] = []
                inner[path[:-1]].append(path)
        boxes_in[box.cluster].append(box)
    number = 0
    stack: list[tuple[str, ...] | str] = [()]
    while stack:
        item = stack.pop()
        if isinstance(item, str):  # the end of a subgraph
            lines.append(item)
            continue
        indent = "  " * (len(item) + 1)
        if item:
            lines.append("  " * len(item) + f"subgraph module{number}[{quoted(item[-1])}]")
            number += 1
            stack.append("  " * len(item) + "end")
        lines.extend(indent + node_line(box) for box in boxes_in[item])
        stack.extend(reversed(inner[item]))

    for arrow in picture.arrows:
        label = f"|{quoted(arrow.label)}|" if arrow.label else ""
        lines.append(f"  {arrow.source} -->{label} {arrow.target}")

    lines.append("  classDef leaf fill:#dff5df,stroke:#2e7d32")
    lines.append("  classDef function fill:#e3ecff,stroke:#3454a4")
    lines.append("  classDef module fill:#f1e8fb,stroke:#8a5cc2")
    for kind in ("leaf", "function", "module"):
        ids = [box.id for box in picture.boxes if box.kind == kind]
        if ids:
            lines.append(f"  class {','.join(ids)} {kind}")
    return "\n".join(lines) + "\n"
