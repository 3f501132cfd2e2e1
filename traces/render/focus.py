"""One part of a graph, node by node: ``python -m traces --focus NAME`` and ``trace.show(focus=NAME)``.

A model's graph is shown by module, which answers "how big is what" but not
"where did this parameter's gradient come from". The focus answers that for
one name: a module (``layer1.0.conv1``: its nodes and its parameters), a
parameter or a named tensor (``layer1.0.conv1.weight``, ``loss``), or a node
(its id, ``n12``, or its class, ``ConvolutionBackward0``: every node of it).
It shows the path the gradient took from the output, module by module, then
each node of the part in the order backward ran it, with its formula and the
numbers it produced, and the gradient each parameter received.

A name is checked against the finished trace: the model exists only once the
script has built it. Nothing here changes the trace.
"""

from __future__ import annotations

import difflib
from collections import deque

from rich.console import Console
from rich.text import Text

from traces.below.formulas import gradient_equations
from traces.data.graph import AutogradGraph, AutogradNode
from traces.data.trace import Trace
from traces.recorders.backward import BackwardStep
from traces.render.terminal_lines import Lines, arriving_text, gradient_text, location_text
from traces.render.terminal_native import slot_targets


class UnknownFocus(ValueError):
    """A --focus name the trace does not hold; the message lists the closest names it does."""


def focus_names(graph: AutogradGraph) -> list[str]:
    """Every name --focus accepts: modules, named tensors (parameters first among them), node ids and classes."""
    names = [info.name for info in graph.modules]
    names += [node.variable for node in graph.nodes if node.variable]
    names += [node.id for node in graph.nodes] + [node.name for node in graph.nodes]
    return list(dict.fromkeys(names))


def focused_nodes(graph: AutogradGraph, name: str) -> tuple[str, list[AutogradNode]]:
    """What ``name`` is, in words, and its nodes; raises ``UnknownFocus`` for a name the graph lacks."""
    modules = {info.name: info for info in graph.modules}
    if name in modules:
        inside = [node for node in graph.nodes if node.module == name or (node.module or "").startswith(name + ".")]
        return f"module {name} ({modules[name].kind})", inside
    named = [node for node in graph.nodes if node.variable == name]
    if named:
        if not named[0].is_leaf:
            return f"tensor {name}", named
        # A parameter: with the nodes that computed its gradient (several where it is shared).
        senders = {edge.source for edge in graph.edges if edge.target == named[0].id}
        return f"parameter {name}", [node for node in graph.nodes if node.id in senders] + named
    by_id = [node for node in graph.nodes if node.id == name]
    by_class = [node for node in graph.nodes if node.name == name]
    if by_id or by_class:
        return (f"node {name}" if by_id else f"every {name} node ({len(by_class)})"), by_id or by_class
    close = difflib.get_close_matches(name, focus_names(graph), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; name a module, a parameter or a node of the trace"
    raise UnknownFocus(f"--focus {name!r} is not in the trace{hint}")


def path_from_output(graph: AutogradGraph, target: str) -> list[str]:
    """The shortest chain of node ids from an output to ``target``, the way the gradient flowed."""
    came_from: dict[str, str | None] = {output: None for output in graph.outputs}
    queue = deque(graph.outputs)
    while queue:
        node_id = queue.popleft()
        if node_id == target:
            break
        for edge in graph.edges_from(node_id):
            if edge.target not in came_from:
                came_from[edge.target] = node_id
                queue.append(edge.target)
    if target not in came_from:
        return []
    path = [target]
    while came_from[path[-1]] is not None:
        path.append(came_from[path[-1]])
    return path[::-1]


def run_text(nodes: list[AutogradNode]) -> str:
    """A run of path nodes in one module: ``layer4.1.bn2: NativeBatchNormBackward0``."""
    where = nodes[0].module or location_text(nodes[0]) or "outside any module"
    names = [node.label for node in nodes]
    return f"{where}: {' → '.join(names)}"


def render_focus(trace: Trace, console: Console, name: str) -> None:
    """The part of the graph ``name`` names, node by node (see the module's docstring)."""
    graph = trace.graph
    if graph is None:
        console.print("[dim]This run recorded no backward pass.[/dim]")
        return
    what, nodes = focused_nodes(graph, name)
    steps = {step.node: step for step in trace.backward}
    lines = Lines(console)
    lines.add(0, Text.assemble(("Focus: ", "bold"), what, f", {len(nodes)} node{'s' if len(nodes) != 1 else ''}"))
    parameters = [node for node in nodes if node.is_leaf]
    if parameters:
        lines.add(2, Text("gradients into .grad:", style="bold"))
        for node in parameters:
            step = steps.get(node.id)
            arrived = gradient_text(step.arriving[0]) if step and step.arriving else "none (backward never reached it)"
            lines.add(4, Text(f"{node.variable or node.id}: {Text.from_markup(arrived).plain}", style="yellow"))
    first = min(nodes, key=lambda node: steps[node.id].order if node.id in steps else len(steps))
    path = path_from_output(graph, first.id)
    if path:
        lines.add(2, Text(f"path from the output, {len(path)} nodes, module by module:", style="bold"))
        runs: list[list[AutogradNode]] = []
        for node in (graph.node(node_id) for node_id in path):
            if runs and runs[-1][0].module == node.module and node.module:
                runs[-1].append(node)
            else:
                runs.append([node])
        for run in runs:
            lines.add(4, Text(run_text(run)))
    lines.add(2, Text("node by node, in the order backward ran them:", style="bold"))
    for node in sorted(nodes, key=lambda node: steps[node.id].order if node.id in steps else len(steps)):
        add_node(lines, graph, node, steps.get(node.id))
    lines.print()


def add_node(lines, graph: AutogradGraph, node: AutogradNode, step: BackwardStep | None, indent: int = 4, source: bool = True
) -> None:
    """One node: its step, name and module, where the code made it, the gradients and its formula
    with the numbers; the formula's source on a line of its own, whole, so that it stays a link."""

    module = f" in {node.module}" if node.module else ""
    order = f"step {step.order}: " if step else "never ran: "
    lines.add(indent, Text.assemble((order, "dim"), (node.label, "bold cyan"), module), location_text(node))
    if step is None:
        return
    lines.add(indent + 4, Text(f"gradient arriving: {Text.from_markup(arriving_text(step)).plain}"))
    if step.leaving:
        leaving = ", ".join(Text.from_markup(gradient_text(g)).plain for g in step.leaving)
        lines.add(indent + 4, Text(f"gradients leaving: {leaving}"))
    derivative = node.derivative
    if derivative is None:
        return
    for equation in gradient_equations(derivative, node, step, slot_targets(graph, node.id)):
        lines.add(indent + 4, Text(equation, style="blue"))
    if source and derivative.source is not None:
        lines.add(indent + 4, Text(derivative.summary, style="dim"), derivative.source.location)
