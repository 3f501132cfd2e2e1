"""Render a trace to the terminal with rich: the graph as a tree, backward as a table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from traces.graph import AutogradGraph, AutogradNode
from traces.tensors import TensorSummary
from traces.trace import Trace


def render_trace(trace: Trace, console: Console) -> None:
    if trace.graph is None:
        console.print("[dim]This run recorded no backward pass.[/dim]")
        return
    console.print(graph_tree(trace.graph))
    if trace.backward:
        console.print(backward_table(trace, trace.graph))


def node_text(node: AutogradNode) -> str:
    if node.is_leaf:
        name = escape(node.variable or "leaf")
        value = escape(str(node.leaf))
        return f"[bold green]{name}[/bold green] = {value} [dim](leaf, {node.leaf.dtype}{node.leaf.shape}, {node.name})[/dim]"
    text = f"[bold cyan]{node.name}[/bold cyan]"
    if node.variable:
        text = f"[bold]{escape(node.variable)}[/bold] = {text}"
    if node.saved:
        text += "  [dim]saved: " + ", ".join(saved_text(s) for s in node.saved) + "[/dim]"
    return text


def saved_text(saved) -> str:
    if saved.shape is not None:
        text = f"{saved.name} {saved.dtype}{saved.shape}"
    else:
        text = escape(f"{saved.name}={saved.value}")
    return text + " (freed)" if saved.freed else text


def graph_tree(graph: AutogradGraph) -> Tree:
    """The graph from the outputs down to the leaves, the way gradients flow.

    A node reached a second time is listed again but not expanded again.
    """
    tree = Tree("[bold]Autograd graph[/bold] [dim](gradients flow from the output down to the leaves)[/dim]")
    shown: set[str] = set()

    def add(branch: Tree, node_id: str, edge_text: str) -> None:
        node = graph.node(node_id)
        if node_id in shown:
            branch.add(f"{edge_text}{node_text(node)} [dim](shown above)[/dim]")
            return
        shown.add(node_id)
        child = branch.add(edge_text + node_text(node))
        for edge in graph.edges_from(node_id):
            gradient = f"[yellow]grad {gradient_text(edge.gradient)}[/yellow] → " if edge.gradient else ""
            add(child, edge.target, gradient)

    for output_id in graph.outputs:
        add(tree, output_id, "")
    return tree


def gradient_text(summary: TensorSummary | None) -> str:
    return "None" if summary is None else escape(str(summary))


def backward_table(trace: Trace, graph: AutogradGraph) -> Table:
    table = Table(title="Backward: the order in which the engine ran the nodes", title_justify="left")
    table.add_column("step", justify="right")
    table.add_column("node")
    table.add_column("gradient arriving")
    table.add_column("gradients leaving, one per edge")
    for step in trace.backward:
        node = graph.node(step.node)
        arriving = ", ".join(gradient_text(g) for g in step.arriving)
        leaving = ", ".join(gradient_text(g) for g in step.leaving) or "[dim](into .grad)[/dim]"
        table.add_row(str(step.order), escape(node.label), arriving, leaving)
    return table
