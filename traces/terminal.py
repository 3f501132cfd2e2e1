"""Render a trace to the terminal with rich: the graph as a tree, backward as a table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from traces.graph import AutogradGraph, AutogradNode
from traces.ops import fold_calls
from traces.tensors import TensorSummary
from traces.terminal_native import derivative_text, equations_text, render_formula_sources, render_kernels
from traces.trace import Trace

PHASES = ("forward", "backward")


def render_trace(trace: Trace, console: Console) -> None:
    """All four views: graph, backward, ops and source."""
    if trace.graph is None:
        console.print("[dim]This run recorded no backward pass.[/dim]")
    else:
        console.print(graph_tree(trace.graph))
        render_formula_sources(trace, console)
        if trace.backward:
            console.print(backward_table(trace, trace.graph))
    console.print()
    render_ops(trace, console)
    console.print()
    render_source(trace, console)


def render_ops(trace: Trace, console: Console) -> None:
    table = Table(title="ATen ops: what ran below autograd, folded by name", title_justify="left")
    table.add_column("phase")
    table.add_column("op")
    table.add_column("calls", justify="right")
    table.add_column("first call: inputs -> outputs")
    for phase in PHASES:
        folded = fold_calls(trace.ops, phase)
        if not folded:
            table.add_row(phase, "[dim]no ATen ops ran[/dim]", "", "")
        for row in folded:
            inputs = ", ".join(str(meta) for meta in row.first.inputs)
            outputs = ", ".join(str(meta) for meta in row.first.outputs)
            table.add_row(phase, row.op, str(row.count), escape(f"{inputs} -> {outputs}"))
            phase = ""
    console.print(table)
    render_kernels(trace, console)


def render_source(trace: Trace, console: Console) -> None:
    if trace.source_skipped:
        console.print(f"[bold]Torch source entered:[/bold] skipped: {escape(trace.source_skipped)}")
        return
    console.print(
        f"[bold]Torch source entered[/bold] [dim]({len(trace.source)} functions, in first-entry order, "
        "indented by call depth, with the call count; ctrl+click a path to open it)[/dim]"
    )
    for entry in trace.source:
        indent = "  " * entry.depth
        console.print(f"{indent}{entry.location}  {entry.function} x{entry.calls}", markup=False, soft_wrap=True)


def node_text(node: AutogradNode) -> str:
    if node.is_leaf:
        name = escape(node.variable or "leaf")
        value = escape(str(node.leaf))
        kind = f"leaf, {node.leaf.dtype}{node.leaf.shape}, {node.name}"
        return f"[bold green]{name}[/bold green] = {value} [dim]({kind})[/dim]"
    text = f"[bold cyan]{node.name}[/bold cyan]"
    if node.variable:
        text = f"[bold]{escape(node.variable)}[/bold] = {text}"
    if node.module:
        text += f" [magenta]in {escape(node.module)}[/magenta]"
    if node.saved:
        text += "  [dim]saved: " + ", ".join(saved_text(s) for s in node.saved) + "[/dim]"
    return text


def saved_text(saved) -> str:
    if saved.shape is not None:
        text = f"{saved.name} {saved.dtype}{saved.shape}"
        if saved.version is not None:  # the version it was saved at, which backward checks
            text += f" _version={saved.version}"
    elif saved.value is not None:
        text = escape(f"{saved.name}={saved.value}")
    else:  # freed before the graph was walked: nothing is known of it but its name
        text = saved.name
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
        child = branch.add(edge_text + node_text(node) + derivative_text(node, graph))
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
    table.add_column("formula, with the numbers")
    for step in trace.backward:
        node = graph.node(step.node)
        arriving = ", ".join(gradient_text(g) for g in step.arriving)
        leaving = ", ".join(gradient_text(g) for g in step.leaving) or "[dim](into .grad)[/dim]"
        table.add_row(str(step.order), escape(node.label), arriving, leaving, equations_text(step, node, graph))
    return table
