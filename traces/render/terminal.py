"""Render a trace to the terminal with rich: the graph as a tree, backward as a table.

A small graph is shown node by node. A model's graph is shown by ``nn.Module``
(see ``traces.render.grouping``): the module tree down to a depth, with node counts
and gradient norms, repeated blocks folded, and backward as one row per run
of steps in one module. Every node's text is made by ``node_text``; every
module's by ``module_text``. Paths are printed relative to the current folder
when inside it, so that VSCode's terminal makes them links.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from traces.basics.places import shown_path
from traces.data.graph import AutogradGraph, AutogradNode, SavedValue
from traces.data.trace import VIEWS, Trace
from traces.recorders.ops import fold_calls, passes
from traces.render.focus import add_node, focused_nodes, render_focus
from traces.render.grouping import (
    DEFAULT_DEPTH,
    Fold,
    ModuleGroup,
    combined_norm,
    display_groups,
    first_made,
    folded,
    gradient_norms,
    grouped,
    kinds,
    module_tree,
    opened_modules,
)
from traces.render.terminal_lines import Lines, arriving_text, edge_gradient_text, gradient_text, location_text
from traces.render.terminal_native import derivative_text, equations_text, formula_numbers, render_formula_sources, render_kernels

PHASES = ("forward", "backward")
MAX_SHAPES = 4  # an op's first call shows this many inputs (and outputs); the rest are counted
MAX_LINE_GROUPS = 30  # lines of code outside any module shown one by one; the rest are counted


def render_trace(
    trace: Trace, console: Console, views: tuple[str, ...] = VIEWS, depth: int | None = None, focus: str | None = None
) -> None:
    """The views asked for, of graph, backward, ops and source, in that order.

    ``depth`` opens a model's module tree that many levels (default 2, for graphs
    too large to list node by node). ``focus`` (a module, parameter or node name)
    shows that part of the graph node by node in place of the graph and backward
    views (see ``traces.render.focus``); an unknown name raises ``UnknownFocus`` before
    anything is printed.
    """
    shown = []
    if focus is not None:
        if trace.graph is not None:
            focused_nodes(trace.graph, focus)  # raises for an unknown name, before anything is printed
        shown.append(lambda: render_focus(trace, console, focus))
    elif "graph" in views or "backward" in views:
        shown.append(lambda: render_graph_and_backward(trace, console, views, depth))
    if "ops" in views:
        compact = trace.graph is not None and grouped(trace.graph, depth)
        shown.append(lambda: render_ops(trace, console, compact))
    if "source" in views:
        shown.append(lambda: render_source(trace, console))
    for number, show in enumerate(shown):
        if number:
            console.print()
        show()


def render_graph_and_backward(trace: Trace, console: Console, views: tuple[str, ...], depth: int | None) -> None:
    if trace.graph is None:
        console.print("[dim]This run recorded no backward pass.[/dim]")
        return
    if grouped(trace.graph, depth):
        depth = DEFAULT_DEPTH if depth is None else depth
        if "graph" in views:
            render_module_graph(trace, depth, console)
        if "backward" in views and trace.backward:
            console.print(module_backward_table(trace, depth, console.width))
            render_slowest(trace, console, depth)
        return
    if "graph" in views:
        if fits_as_tree(trace.graph, console.width):
            console.print(graph_tree(trace.graph))
        else:
            render_graph_list(trace.graph, console)
        render_formula_sources(trace, console)
    if "backward" in views and trace.backward:
        if console.width >= TABLE_WIDTH:
            console.print(backward_table(trace, trace.graph, console.width))
        else:
            render_backward_list(trace, console)
        render_slowest(trace, console, None)


def print_saved(console: Console, paths) -> None:
    """``Saved the trace:`` and each file on a line of its own, whole, so that each is a link."""
    console.print("Saved the trace:", markup=False)
    for path in paths:
        console.print(f"  {path}", markup=False, soft_wrap=True, highlight=False)


# Node by node, for small graphs


def place_text(node: AutogradNode) -> str:
    """Where the user's code made the node, as a dim ``path:line`` (empty when unknown)."""
    if node.path is None:
        return ""
    return f"  [dim]{escape(shown_path(node.path))}:{node.line}[/dim]"


def node_text(node: AutogradNode) -> str:
    """One node, as the graph tree shows it: every detail the trace holds about it, in one place."""
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
    return text + place_text(node)


def saved_text(saved: SavedValue) -> str:
    if saved.packed is not None:
        text = escape(f"{saved.name} packed {saved.packed}")
    elif saved.shape is not None:
        text = f"{saved.name} {saved.dtype}{saved.shape}"
        if saved.version is not None:  # the version it was saved at, which backward checks
            text += f" _version={saved.version}"
        if saved.version_now is not None:
            text += f" (changed in place since: now {saved.version_now}, so backward will raise)"
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
    numbers = formula_numbers(graph)
    # A walk with a stack of (branch, node, edge text), not recursion: a graph can be deep.
    stack = [(tree, output_id, "") for output_id in reversed(graph.outputs)]
    while stack:
        branch, node_id, edge_text = stack.pop()
        node = graph.node(node_id)
        if node_id in shown:
            branch.add(f"{edge_text}{node_text(node)} [dim](shown above)[/dim]")
            continue
        shown.add(node_id)
        child = branch.add(edge_text + node_text(node) + derivative_text(node, graph, numbers))
        for edge in reversed(graph.edges_from(node_id)):
            gradient = f"[yellow]grad {edge_gradient_text(edge)}[/yellow] → " if edge.gradient else ""
            stack.append((child, edge.target, gradient))
    return tree


def walk_order(graph: AutogradGraph) -> list[tuple[str, int]]:
    """(node id, how deep the tree nests it) for each node, once, in the tree's order."""
    order: list[tuple[str, int]] = []
    seen: set[str] = set()
    stack = [(output_id, 0) for output_id in reversed(graph.outputs)]
    while stack:
        node_id, level = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        order.append((node_id, level))
        for edge in reversed(graph.edges_from(node_id)):
            stack.append((edge.target, level + 1))
    return order


TREE_SHARE = 3  # the tree's indentation may take at most a third of the width


def fits_as_tree(graph: AutogradGraph, width: int) -> bool:
    """Whether the nested tree leaves each node enough of the width: a chain of layers nests
    four columns a node, and at 80 columns its formulas and links would be cut to pieces."""
    deepest = max((level for _, level in walk_order(graph)), default=0)
    return 4 * (deepest + 1) <= width // TREE_SHARE


def render_graph_list(graph: AutogradGraph, console: Console) -> None:
    """The graph node by node as a numbered list, for a graph too deep to nest at this width: each
    node, its formula, and its edges (``→ #3``, with the gradient that flowed). A formula that does
    not fit goes under its node whole, and a ``path:line`` on a line of its own."""
    order = walk_order(graph)
    number = {node_id: position + 1 for position, (node_id, _) in enumerate(order)}
    lines = Lines(console)
    lines.add(
        0,
        Text.assemble(
            ("Autograd graph", "bold"),
            (" (gradients flow from the output down to the leaves), node by node: #1 is the output", "dim"),
        ),
    )
    numbers = formula_numbers(graph)
    first_of_class: dict[str, str] = {}  # a node class's formula is written out once, at its first node
    for node_id, _ in order:
        node = graph.node(node_id)
        text = node_text(node).removesuffix(place_text(node))
        lines.add(0, Text.from_markup(f"#{number[node_id]} {text}"), location_text(node))
        if node.name in first_of_class and node.derivative is not None:
            lines.add(4, Text(f"formula: as #{number[first_of_class[node.name]]}", style="dim"))
        else:
            first_of_class[node.name] = node_id
            for line in derivative_text(node, graph, numbers).split("\n")[1:]:
                lines.add(4, Text.from_markup(line.removeprefix("  ")))
        for edge in graph.edges_from(node_id):
            target = graph.node(edge.target)
            gradient = f" [yellow]grad {edge_gradient_text(edge)}[/yellow]" if edge.gradient else ""
            lines.add(4, Text.from_markup(f"→ #{number[edge.target]} {escape(target.label)}{gradient}"))
    lines.print()


TABLE_WIDTH = 120  # narrower, the five columns of the backward table would cut its formulas and numbers


def render_backward_list(trace: Trace, console: Console) -> None:
    """The backward view for a narrow terminal: each step on its own lines (what arrived, what
    left, the formula with the numbers), so that nothing is cut into pieces to fit a column."""

    lines = Lines(console)
    lines.add(0, Text("Backward: the order in which the engine ran the nodes", style="bold"))
    for step in trace.backward:
        add_node(lines, trace.graph, trace.graph.node(step.node), step, indent=0, source=False)
    lines.print()


def backward_table(trace: Trace, graph: AutogradGraph, width: int = 120) -> Table:
    table = Table(title="Backward: the order in which the engine ran the nodes", title_justify="left")
    labels = [graph.node(step.node).label for step in trace.backward]
    # A label may wrap between its name and its class, never inside the name: parameter names
    # (linear_relu_stack.0.weight, linear_relu_stack.0.bias) tell the rows apart.
    longest_word = max((len(word) for label in labels for word in label.split()), default=4)
    longest_label = max((len(label) for label in labels), default=4)
    room = width - 13 - 2 * 20  # what two gradient columns of 20 and the borders leave
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("node", width=max(longest_word, min(longest_label, room)))
    table.add_column("gradient arriving", overflow="fold")
    table.add_column("gradients leaving, one per edge", overflow="fold")
    table.add_column("formula, with the numbers", overflow="fold")
    for step, label in zip(trace.backward, labels):
        arriving = arriving_text(step)
        leaving = ", ".join(gradient_text(g) for g in step.leaving) or "[dim](into .grad)[/dim]"
        node = graph.node(step.node)
        table.add_row(str(step.order), escape(label), arriving, leaving, equations_text(step, node, graph))
    return table


# By module, for a model


def norm_text(norm: float | None) -> str:
    return "" if norm is None else f" · grad norm {norm:.4g}"


def module_text(group: ModuleGroup, title: str, frontier: bool, norms: dict[str, float]) -> tuple[Text, str | None]:
    """One module, as the module tree shows it: name and class, its nodes (their classes, where
    the tree goes no deeper), the norm of its parameters' gradients, and the line of code that
    called it."""
    nodes = list(group.nodes())
    text = Text(title, style="bold magenta")
    count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
    text.append(f"  {count}: {kinds(nodes)}" if frontier else f"  {count}")
    text.append(norm_text(combined_norm([norms[node.id] for node in nodes if node.id in norms])), style="yellow")
    return text, place(group.location)


def place(location: str | None) -> str | None:
    """A ``path:line`` to print (see ``shown_path``)."""
    if not location:
        return None
    path, _, line = location.rpartition(":")
    return f"{shown_path(path)}:{line}"


def relative_name(group: ModuleGroup, parent: ModuleGroup | None) -> str:
    """``conv1`` for ``layer1.0.conv1`` inside ``layer1.0``: the indentation shows the rest."""
    if parent is not None and group.name.startswith(parent.name + "."):
        return group.name[len(parent.name) + 1 :]
    return group.name


def render_module_graph(trace: Trace, depth: int, console: Console) -> None:
    """The graph by module: the module tree down to ``depth``, then the lines of code outside any module."""
    graph = trace.graph
    norms = gradient_norms(trace.backward, graph)
    outputs = ", ".join(graph.node(output).label for output in graph.outputs)
    lines = Lines(console)
    lines.add(
        0,
        Text.assemble(
            ("Autograd graph", "bold"),
            f" of {outputs}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
            + (f"by module, {depth} level{'' if depth == 1 else 's'} deep" if graph.modules else "by the line of code that made them"),
            (" (--depth N to open more levels; the JSON has every node)" if graph.modules else "", "dim"),
        ),
    )
    # A walk with a stack, not recursion: (indent, fold, parent) for a module to show,
    # (indent, text, None) for a line to show after a module's insides.
    stack: list[tuple[int, Fold | Text, ModuleGroup | None]]
    stack = [(0, fold, None) for fold in reversed(folded(module_tree(graph)))]
    while stack:
        indent, fold, parent = stack.pop()
        if isinstance(fold, Text):
            lines.add(indent, fold)
            continue
        group = fold.first
        frontier = group.depth >= depth or not group.children
        title = group.title if parent is None else f"{relative_name(group, parent)} ({group.kind})"
        lines.add(indent, *module_text(group, title, frontier, norms))
        if frontier:
            add_parameters(lines, indent + 4, group, norms)
        if fold.same:
            stack.append((indent, same_structure_text(fold, parent, norms), None))
        if frontier:
            continue
        if group.own:
            lines.add(indent + 2, Text(f"itself: {kinds(group.own)}"), location_text(first_made(group.own)))
        for inner in reversed(folded(group.children)):
            stack.append((indent + 2, inner, group))
    add_lines_outside_modules(lines, graph)
    lines.print()


MAX_PARAMETERS = 6  # parameters named under a module in the grouped view; --focus shows the rest


def add_parameters(lines: Lines, indent: int, group: ModuleGroup, norms: dict[str, float]) -> None:
    """``params: conv1.weight 880.9, bn1.weight 3.1, …``: the module's parameters, named as
    --focus takes them (relative to the module), with the norm of the gradient each received."""
    named = [node for node in group.nodes() if node.is_leaf and node.variable]
    if not named:
        return
    prefix = group.name + "."
    shown = [
        f"{node.variable.removeprefix(prefix)} {norms[node.id]:.4g}" if node.id in norms else f"{node.variable.removeprefix(prefix)} -"
        for node in named[:MAX_PARAMETERS]
    ]
    more = f", … +{len(named) - MAX_PARAMETERS} more (--focus {group.name})" if len(named) > MAX_PARAMETERS else ""
    lines.add(indent, Text("grad norms: " + ", ".join(shown) + more, style="yellow"))


def same_structure_text(fold: Fold, parent: ModuleGroup | None, norms: dict[str, float]) -> Text:
    names = [relative_name(group, parent) for group in fold.same]
    which = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]} ({len(names)} modules)"
    text = Text(which, style="bold magenta")
    text.append(f": same structure as {relative_name(fold.first, parent)}")
    if len(fold.same) <= 3:
        for group in fold.same:
            norm = combined_norm([norms[node.id] for node in group.nodes() if node.id in norms])
            if norm is not None:
                prefix = f" {relative_name(group, parent)}" if len(fold.same) > 1 else ""
                text.append(f" ·{prefix} grad norm {norm:.4g}", style="yellow")
    return text


def add_lines_outside_modules(lines: Lines, graph: AutogradGraph) -> None:
    """The nodes no module made, one entry per line of code that made them."""
    by_line: dict[str, list[AutogradNode]] = {}
    for node in graph.nodes:
        if not node.module:
            by_line.setdefault(node.location or "", []).append(node)
    if not by_line:
        return
    lines.add(0, Text("outside any module", style="bold"))
    ordered = sorted(by_line.values(), key=lambda nodes: first_made(nodes).made if first_made(nodes) else -1)
    for nodes in ordered[:MAX_LINE_GROUPS]:
        named = [node for node in nodes if node.variable]
        if len(named) == len(nodes) <= 3:  # loss = SumBackward0; w (AccumulateGrad)
            text = Text(", ".join(node.label if node.is_leaf else f"{node.variable} = {node.name}" for node in nodes))
        else:  # LogSoftmaxBackward0, NllLossBackward0 (loss)
            text = Text(kinds(nodes) + (f" ({', '.join(node.variable for node in named[:6])})" if named else ""))
        lines.add(2, text, location_text(first_made(nodes)))
    if len(ordered) > MAX_LINE_GROUPS:
        rest = sum(len(nodes) for nodes in ordered[MAX_LINE_GROUPS:])
        lines.add(2, Text(f"… {len(ordered) - MAX_LINE_GROUPS} more lines, {rest} nodes (all in the JSON)", style="dim"))


def module_backward_table(trace: Trace, depth: int, width: int = 120) -> Table:
    """Backward by module: one row per run of consecutive steps in one module (or line of code).

    No cell is ever broken inside a word (a number split over two lines reads as two numbers):
    where the four columns do not fit ``width``, the gradient arriving goes under the module's
    name, whole, and the table has three columns."""
    graph = trace.graph
    group_of = display_groups(graph, depth)
    norms = gradient_norms(trace.backward, graph)
    kind_of = {info.name: info.kind for info in graph.modules}
    opened = opened_modules(graph, depth)
    runs: list[list] = []
    for step in trace.backward:
        group = group_of.get(step.node, "")
        if runs and runs[-1][0] == group:
            runs[-1][1].append(step)
        else:
            runs.append([group, [step]])
    rows = []
    for group, steps in runs:
        first, last = steps[0].order, steps[-1].order
        label = group_label(group, kind_of, opened, [graph.node(step.node) for step in steps])
        norm = combined_norm([norms[step.node] for step in steps if step.node in norms])
        steps_text = str(first) if first == last else f"{first}-{last}"
        rows.append((steps_text, label, arriving_text(steps[0]), "" if norm is None else f"norm {norm:.4g}"))
    title = f"Backward, by {'module' if graph.modules else 'line of code'}: the order the engine ran the nodes in"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    widths = [max((Text.from_markup(row[column]).cell_len for row in rows), default=0) for column in range(4)]
    headers = ("steps", "module", "gradient arriving", "into .grad")
    widths = [max(width_, len(header)) for width_, header in zip(widths, headers)]
    table.add_column("steps", justify="right", no_wrap=True)
    if sum(widths) + 2 * 3 <= width:  # each column but the first is set off by two spaces
        table.add_column("module", no_wrap=True)  # never cut: the names tell the rows apart
        table.add_column("gradient arriving", no_wrap=True)
        table.add_column("into .grad", no_wrap=True)
        for row in rows:
            table.add_row(*row)
        return table
    # Too narrow: the gradient under the name. Only a gradient longer than the whole width folds.
    table.add_column("module / gradient arriving", overflow="fold")
    table.add_column("into .grad", no_wrap=True)
    for steps_text, label, arriving, norm in rows:
        table.add_row(steps_text, f"{label}\n  [dim]{arriving}[/dim]", norm)
    return table


def group_label(group: str, kind_of: dict[str, str], opened: set[str], nodes: list[AutogradNode]) -> str:
    if group.startswith("line "):
        if len(nodes) == 1 and nodes[0].variable:
            return escape(nodes[0].label)  # loss (SumBackward0)
        path, _, line = group.removeprefix("line ").rpartition(":")
        named = sorted({node.variable for node in nodes if node.variable})
        return escape(f"{shown_path(path)}:{line}" + (f" ({', '.join(named[:3])})" if named else ""))
    if group.startswith("node "):
        return escape(nodes[0].label)
    kind = kind_of.get(group)
    itself = " itself" if group in opened else ""  # the modules inside it have rows of their own
    return escape(f"{group}{itself} ({kind})" if kind and kind != group else f"{group}{itself}")


# Where backward spent its time

SLOWEST = 5  # modules and nodes listed by the time backward spent in them


def duration_text(nanoseconds: int) -> str:
    """``0.84 ms``, ``12 µs``: short enough never to be broken across lines."""
    if nanoseconds >= 1_000_000_000:
        return f"{nanoseconds / 1e9:.3g} s"
    if nanoseconds >= 1_000_000:
        return f"{nanoseconds / 1e6:.3g} ms"
    return f"{nanoseconds / 1e3:.3g} µs"


def render_slowest(trace: Trace, console: Console, depth: int | None) -> None:
    """The modules (at ``depth``, for a model) and the nodes backward spent longest in: each
    node's wall time from its pre-hook to its hook, summed over the nodes of a module."""
    timed = [step for step in trace.backward if step.time_ns is not None]
    if not timed:
        return
    graph = trace.graph
    total = sum(step.time_ns for step in timed)
    lines = Lines(console)
    lines.add(
        0,
        Text.assemble(
            ("Backward time, slowest first", "bold"),
            (f" (each node's wall time between its hooks; {len(timed)} nodes, {duration_text(total)} in all)", "dim"),
        ),
    )
    if depth is not None and graph.modules:
        group_of = display_groups(graph, depth)
        kind_of = {info.name: info.kind for info in graph.modules}
        by_group: dict[str, int] = {}
        for step in timed:
            group = group_of.get(step.node, "")
            by_group[group] = by_group.get(group, 0) + step.time_ns
        lines.add(2, Text(f"by module, {depth} level{'s' if depth != 1 else ''} deep:"))
        for group, spent in sorted(by_group.items(), key=lambda item: -item[1])[:SLOWEST]:
            nodes = [graph.node(step.node) for step in timed if group_of.get(step.node) == group]
            label = group_label(group, kind_of, set(), nodes)
            lines.add(4, Text(f"{duration_text(spent):>9} {100 * spent / total:3.0f}%  {Text.from_markup(label).plain}"))
    lines.add(2, Text("by node:"))
    for step in sorted(timed, key=lambda step: -step.time_ns)[:SLOWEST]:
        node = graph.node(step.node)
        where = f" in {node.module}" if node.module else ""
        lines.add(4, Text(f"{duration_text(step.time_ns):>9} {100 * step.time_ns / total:3.0f}%  {node.label}{where}"), location_text(node))
    lines.print()


# The ops and the source


def metas_text(metas: list) -> str:
    shown = ", ".join(str(meta) for meta in metas[:MAX_SHAPES])
    return shown + (f", … +{len(metas) - MAX_SHAPES} more" if len(metas) > MAX_SHAPES else "")


def render_ops(trace: Trace, console: Console, compact: bool = False) -> None:
    """One row per op and phase. The op names are never cut (overloads differ only at the end);
    the first call's shapes get what width is left, and end in "…" when they need more."""
    rows = []
    numbers = passes(trace.ops)
    for backward_pass, phase in ((number, phase) for number in numbers for phase in PHASES):
        folded_calls = fold_calls(trace.ops, phase, backward_pass)
        if len(numbers) > 1:  # --backward N: the passes before the traced one ran too
            phase = f"{phase} of pass {backward_pass}"
        if not folded_calls:
            rows.append((phase, "no ATen ops ran", "", ""))
        for row in folded_calls:
            rows.append((phase, row.op, str(row.count), f"{metas_text(row.first.inputs)} -> {metas_text(row.first.outputs)}"))
            phase = ""
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    widths = [max(width, len(title)) for width, title in zip(widths, ("phase", "op", "calls"))]
    shapes_width = console.width - sum(widths) - 13  # 13: the borders and padding of four columns
    table = Table(title="ATen ops: what ran below autograd, folded by name", title_justify="left")
    table.add_column("phase", no_wrap=True, min_width=widths[0])
    if shapes_width < 12:  # a long op name leaves the shapes too little room: they go under the name
        table.add_column("op / first call: inputs -> outputs", no_wrap=True, min_width=widths[1])
        table.add_column("calls", justify="right", no_wrap=True, min_width=widths[2])
        shapes_width = max(console.width - widths[0] - widths[2] - 10, 12)  # 10: three columns' borders
        for phase, op, count, shapes in rows:
            cell = Text(op, style="dim" if not count else "")
            if shapes:
                under = Text("  " + shapes, style="dim")
                under.truncate(shapes_width, overflow="ellipsis")
                cell.append("\n")
                cell.append_text(under)
            table.add_row(phase, cell, count)
        console.print(table)
        render_kernels(trace, console, compact)
        return
    table.add_column("op", no_wrap=True, min_width=widths[1])
    table.add_column("calls", justify="right", no_wrap=True, min_width=widths[2])
    table.add_column("first call: inputs -> outputs", no_wrap=True, max_width=shapes_width)
    for phase, op, count, shapes in rows:
        shapes_text = Text(shapes)
        shapes_text.truncate(shapes_width, overflow="ellipsis")
        table.add_row(phase, Text(op, style="dim" if not count else ""), count, shapes_text)
    console.print(table)
    render_kernels(trace, console, compact)


def render_source(trace: Trace, console: Console) -> None:
    if trace.source_skipped:
        console.print(f"[bold]Torch source entered:[/bold] skipped: {escape(trace.source_skipped)}")
        return
    shown = [entry for entry in trace.source if not entry.building]
    building = [entry for entry in trace.source if entry.building]
    console.print(
        f"[bold]Torch source entered[/bold] [dim]({len(shown)} functions, in first-entry order, "
        "indented by call depth, with the call count; ctrl+click a path to open it)[/dim]"
    )
    width = console.width
    for entry in shown:
        name = f"{entry.function} x{entry.calls}"
        # Indented by call depth as far as the line allows; deeper calls show their depth instead.
        indent = "  " * entry.depth
        if len(indent) + len(name) > width:
            marker = f"{entry.depth}> "
            indent = " " * max(0, width - len(name) - len(marker)) + marker
        what = indent + name
        where = f"{shown_path(entry.path)}:{entry.line}"
        if len(what) + 2 + len(where) <= width:
            console.print(f"{what}  {where}", markup=False, highlight=False, soft_wrap=True)
        else:  # the path on a line of its own, whole, so that it stays a link, indented as far as it fits
            console.print(what, markup=False, highlight=False, soft_wrap=True)
            console.print(" " * max(0, min(len(indent) + 2, width - len(where))) + where, markup=False, highlight=False, soft_wrap=True)
    if building:
        calls = sum(entry.calls for entry in building)
        console.print(
            f"[dim]… and {len(building)} functions ({calls} calls) entered only while building the model, "
            "inside nn.Module __init__s (in the JSON: source, building true)[/dim]"
        )
