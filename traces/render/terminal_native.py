"""The terminal text of what is below Python: formulas on nodes, equations in backward, kernels behind ops.

``traces.render.terminal`` calls each function here from one place: ``derivative_text``
from the graph tree, ``render_formula_sources`` after it, ``equations_text``
from the backward table and ``render_kernels`` after the ops table. They only
read a finished trace. Sources are numbered ``[1]``, ``[2]``, ... in the views
and listed after them with their full links, so that no link is broken across
lines (a terminal makes a whole link clickable only when it is on one line).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from traces.below.dispatcher import OpKernel
from traces.below.formulas import gradient_equations
from traces.below.frames import CppLayer
from traces.below.links import SourceLink
from traces.data.graph import AutogradGraph, AutogradNode
from traces.data.trace import Trace
from traces.recorders.backward import BackwardStep


def numbered(links: Iterable[SourceLink | None]) -> dict[str, int]:
    """A number for each distinct place, in the order given: location -> 1, 2, ..."""
    numbers: dict[str, int] = {}
    for link in links:
        if link is not None and link.location not in numbers:
            numbers[link.location] = len(numbers) + 1
    return numbers


def reference(link: SourceLink | None, numbers: dict[str, int]) -> str:
    if link is None:
        return ""
    return f"[dim]\\[{numbers[link.location]}] {escape(link.location)}[/dim]"


def print_references(console: Console, title: str, links: Iterable[SourceLink | None], numbers: dict[str, int]) -> None:
    """The numbered sources: the installed copy (ctrl+click opens it) and the GitHub link, each
    alone on its line, never broken (a terminal makes a link clickable only when it is whole)."""
    if not numbers:
        return
    console.print(f"[dim]{escape(title)}[/dim]")
    done = set()
    for link in links:
        if link is None or link.location in done:
            continue
        done.add(link.location)
        for number, line in enumerate(where(link)):
            text = f"[{numbers[link.location]}] {line}" if number == 0 else f"    {line}"
            console.print(text, markup=False, soft_wrap=number == 0 or line.startswith("http"), highlight=False)


def where(link: SourceLink) -> list[str]:
    """A source's lines: where it is here, then its link (for a generated file, its template's)."""
    if link.kind == "generated":
        lines = [link.location, "written while torch was built, so not in the repository; generated from:"]
        return lines + ([link.template_url] if link.template_url else [])
    local = link.wheel_copy()
    first = f"{local}:{link.line}" if local is not None and link.line else link.location
    return [first] + ([link.url] if link.url else [])


# --- the graph view ---------------------------------------------------------


def slot_targets(graph: AutogradGraph, node_id: str) -> dict[int, str | None]:
    """The variable name at the end of each of a node's edges, by edge slot."""
    return {edge.output_nr: graph.node(edge.target).variable for edge in graph.edges_from(node_id)}


def formula_sources(graph: AutogradGraph) -> list[SourceLink | None]:
    return [node.derivative.source for node in graph.nodes if node.derivative is not None]


def formula_numbers(graph: AutogradGraph) -> dict[str, int]:
    """The number of each formula's source in the graph: counted once for the whole graph and
    passed to ``derivative_text`` (counting it again at each node was quadratic in the nodes)."""
    return numbered(formula_sources(graph))


def derivative_text(node: AutogradNode, graph: AutogradGraph, numbers: dict[str, int]) -> str:
    """The lines under a node in the graph tree: the formula behind each input's gradient,
    with its source's number from ``formula_numbers(graph)``."""
    derivative = node.derivative
    if derivative is None:
        return ""
    if derivative.kind != "formula":
        text = f"\n[dim]{escape(derivative.summary)}[/dim] {reference(derivative.source, numbers)}"
        return text + returned_text(node, graph)
    lines = [f"\n{reference(derivative.source, numbers)}[dim]: {escape(derivative.schema or '')}[/dim]"]
    targets = slot_targets(graph, node.id)
    gradients: dict[int, list[str]] = {}  # one formula may compute several inputs' gradients at once
    for slot, name in enumerate(derivative.inputs):
        formula = derivative.formula_for(name)
        if formula is not None:
            gradients.setdefault(id(formula), []).append(f"grad_{targets.get(slot) or name}")
    for formula in derivative.formulas:
        if id(formula) not in gradients:
            continue
        names = escape(", ".join(gradients[id(formula)]))
        plain = f"  [dim](for real tensors: {escape(formula.plain)})[/dim]" if formula.plain else ""
        lines.append(f"\n  [blue]{names}[/blue] = {escape(formula.formula)}{plain}")
    return "".join(lines)


def returned_text(node: AutogradNode, graph: AutogradGraph) -> str:
    """Under a leaf, where its gradient goes when the call was autograd.grad: returned, not into .grad."""
    if not (node.is_leaf and graph.returns):
        return ""
    if node.id in (graph.inputs or []):
        return "\n[bold]autograd.grad returns this gradient; .grad is left as it was (this node does not run)[/bold]"
    return "\n[bold]not an input of autograd.grad: no gradient is computed for it, .grad is left as it was[/bold]"


def render_formula_sources(trace: Trace, console: Console) -> None:
    if trace.graph is None:
        return
    sources = formula_sources(trace.graph)
    title = f"Where the formulas are (the wheel's copy, and PyTorch's repository at {trace.torch_commit[:12]}):"
    print_references(console, title, sources, numbered(sources))


# --- the backward view ------------------------------------------------------


def equations_text(step: BackwardStep, node: AutogradNode, graph: AutogradGraph) -> str:
    """The formula of a node that ran, with the names and the numbers: ``grad_a = grad * b = 1 * 2 = 2``."""
    if node.derivative is None:
        return ""
    lines = gradient_equations(node.derivative, node, step, slot_targets(graph, node.id), graph.not_asked(node.id))
    return "\n".join(escape(line) for line in lines) or f"[dim]{escape(node.derivative.kind)}: no formula[/dim]"


# --- the ops view -----------------------------------------------------------


def kernel_sources(trace: Trace) -> list[SourceLink | None]:
    return [link for kernel in trace.kernels for link in (kernel.source, kernel.registered)]


def render_kernels(trace: Trace, console: Console, compact: bool = False) -> None:
    """After the ops table: each op's entry, its kernel, the dispatch path and, with --native, the C++ path.

    ``compact`` (a model's trace, grouped by module): one row per op, with the kernel
    that ran; the rest is in the JSON trace (``kernels``).
    """
    if not trace.kernels:
        return
    if compact:
        render_kernel_table(trace, console)
        return
    numbers = numbered(kernel_sources(trace))
    title = "[bold]Below the ATen ops[/bold] [dim](native_functions.yaml, the dispatcher, the kernel that ran)[/dim]"
    if trace.native_skipped:
        title += f"\n[dim]C++ path: {escape(trace.native_skipped)}[/dim]"
    tree = Tree(title)
    shown: set[str] = set()
    for kernel in trace.kernels:
        branch = tree.add(f"[dim]{kernel.phase}[/dim] [bold]{escape(kernel.op)}[/bold]")
        if kernel.op in shown:
            branch.add("[dim]entry, kernel and dispatch as above[/dim]")
        else:
            shown.add(kernel.op)
            for line in kernel_lines(kernel, numbers):
                branch.add(line)
        if kernel.cpp_path:
            add_cpp_path(branch.add("C++ path, from the last Python line to the dispatcher"), kernel.cpp_path, kernel)
    console.print(tree)
    title = f"Where they are (the wheel's copy, and PyTorch's repository at {trace.torch_commit[:12]}):"
    print_references(console, title, kernel_sources(trace), numbers)


def render_kernel_table(trace: Trace, console: Console) -> None:
    """One row per op: the C++ kernel that ran for it (an op run in both phases is listed once)."""
    table = Table(
        title="Below the ATen ops: the kernel that ran for each (schemas, dispatch keys and where each "
        "is registered: in the JSON trace, under kernels)",
        title_justify="left",
    )
    keys = {kernel.device_key for kernel in trace.kernels if kernel.symbol}
    table.add_column("op", overflow="fold")
    table.add_column(f"{keys.pop()} kernel that ran" if len(keys) == 1 else "kernel that ran", overflow="fold")
    listed: set[str] = set()
    for kernel in trace.kernels:
        if kernel.op in listed:
            continue
        listed.add(kernel.op)
        ran = kernel.symbol if kernel.symbol else kernel.note or "no kernel of its own"
        table.add_row(escape(kernel.op), escape(ran))
    console.print(table)


def kernel_lines(kernel: OpKernel, numbers: dict[str, int]) -> list[str]:
    lines = []
    if kernel.schema:
        delegate = f"; structured: the kernel is {kernel.structured_delegate}'s" if kernel.structured_delegate else ""
        lines.append(f"{escape(kernel.schema)}[dim]{escape(delegate)}[/dim] {reference(kernel.source, numbers)}")
    if kernel.note:
        lines.append(f"[dim]{escape(kernel.note)}[/dim]")
    if kernel.dispatch:
        hops = [f"{step.key} ({'fallthrough' if step.fallthrough else step.kernel})" for step in kernel.dispatch]
        lines.append("dispatch: " + escape(" → ".join(hops)))
    if kernel.symbol:
        listed = f"{kernel.kernel_entry} lists {kernel.kernel} for {kernel.kernel_key}"
        lines.append(f"{escape(kernel.device_key or '')} kernel: [green]{escape(kernel.symbol)}[/green] [dim]({escape(listed)})[/dim]")
    if kernel.registered:
        generated = ", generated at build time" if kernel.registered.kind == "generated" else ""
        lines.append(f"[dim]registered at[/dim] {reference(kernel.registered, numbers)}[dim]{generated}[/dim]")
    return lines


def add_cpp_path(branch: Tree, layers: list[CppLayer], kernel: OpKernel) -> None:
    width = max(len(layer.layer) for layer in layers)
    for layer in layers:
        names = escape(" → ".join(layer.functions)) if layer.functions else "[dim]…[/dim]"
        folded = f" [dim](+{layer.folded} {'frame' if layer.folded == 1 else 'frames'} of plumbing)[/dim]" if layer.folded else ""
        branch.add(f"[cyan]{escape(layer.layer.ljust(width))}[/cyan]  {names}{folded}")
    if layers[-1].layer == "handed to the trace" and kernel.symbol:
        branch.add(f"[dim]without the trace, the dispatcher calls the {escape(kernel.device_key or '')} kernel here: "
                   f"{escape(kernel.symbol)}[/dim]")  # fmt: skip
