"""The words and lines the terminal's views share: a gradient, the line of code a node came
from, and indented lines that keep a ``path:line`` whole (so it stays a link).

Used by ``traces.render.terminal`` (the views) and ``traces.render.focus`` (one part of the graph, node by node).
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from traces.basics.places import shown_path
from traces.data.graph import AutogradNode
from traces.data.tensors import TensorSummary


def gradient_text(summary: TensorSummary | None, before_hooks: TensorSummary | None = None) -> str:
    text = "None" if summary is None else escape(str(summary))
    return text if before_hooks is None else f"{text} {hooked_text(before_hooks)}"


def hooked_text(before_hooks: TensorSummary) -> str:
    if before_hooks.values is None and before_hooks.norm is None:  # a sum too large to have kept
        return "(a tensor hook changed it)"
    return escape(f"(a tensor hook changed it from {before_hooks})")


def edge_gradient_text(edge) -> str:
    return gradient_text(edge.gradient, edge.hooked_from)


def arriving_text(step) -> str:
    before = step.before_hooks or [None] * len(step.arriving)
    return ", ".join(gradient_text(g, b) for g, b in zip(step.arriving, before))


def location_text(node: AutogradNode | None) -> str | None:
    if node is None or node.path is None:
        return None
    return f"{shown_path(node.path)}:{node.line}"


class Lines:
    """Indented lines that fit the console's width: text wraps under its indentation; a
    ``path:line`` goes at the end of its line when it fits, else on a line of its own, whole,
    so that it stays a link (a path longer than the width is the only line that runs over)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lines: list[Text] = []

    def add(self, indent: int, text: Text, location: str | None = None) -> None:
        width = max(self.console.width - indent - 4, 20)
        if location is not None and text.cell_len + 2 + len(location) <= width:
            text = text.copy()
            text.append(f"  {location}", style="dim")
            location = None
        for number, line in enumerate(text.wrap(self.console, width, overflow="fold")):
            self.lines.append(Text(" " * (indent if number == 0 else indent + 4)) + line)
        if location is not None:
            self.lines.append(Text(" " * (indent + 4) + location, style="dim"))

    def print(self) -> None:
        for line in self.lines:
            self.console.print(line, soft_wrap=True)
