"""Dynamic versus static graphs: eager PyTorch builds a new graph on every forward.

The model below branches on its input's values and loops as many times as its
input says; in eager mode every call builds the autograd graph of the Python
that actually ran, so two inputs give two different graphs, and backward frees
each one. Capturing one graph ahead of time cannot follow that: torch.jit.trace
(deprecated) bakes in the branch it saw and is silently wrong for the other
input, torch.fx.symbolic_trace refuses, torch.compile splits the model at graph
breaks and recompiles, and torch.export refuses.

In the debugger: put a breakpoint on `if h.sum() > 0:` in `forward`. It stops
for every eager call and while torch.jit.trace records, but never when the
traced module runs on B: the trace runs without your Python. Under
torch.fx.symbolic_trace, look at `h` in the Variables pane: it is a `Proxy`;
`if` calls its `__bool__`, which ends in torch/fx/proxy.py
`TracerBase.to_bool`, where the TraceError is raised. Put a breakpoint in
`record_graph` below to see each FX graph that torch.compile's Dynamo hands
to a backend.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

import contextlib
import io
import linecache
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from scenarios._runner import run_scenario
from traces import NO_TRACE, AutogradGraph, Tracer, record_backward
from traces.data.graph import autograd_nodes

INPUT_A = [1.0, -2.0, 3.0]  # sum(x * weight) = 6 > 0: relu; max |x| = 3: three turns of the loop
INPUT_B = [-2.0, 1.0, -1.0]  # sum(x * weight) = -3.5: negate; max |x| = 2: two turns


class DataDependentModel(nn.Module):
    """A model whose forward depends on the values of its input, not only its shape."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, 0.5, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * self.weight
        # A branch on the input's values, then a loop whose count the input decides.
        if h.sum() > 0:
            h = h.relu()
        else:
            h = -h
        for _ in range(int(x.abs().max())):
            h = h * 2
        return h


FORWARD_FILE = DataDependentModel.forward.__code__.co_filename


@dataclass
class Message:
    """Something torch said (an error, a warning, a graph break) and the line of forward it names."""

    kind: str  # the exception or warning class, e.g. "TraceError"
    text: str  # its first line
    line: str | None = None  # the line of DataDependentModel.forward it points at
    hints: list[str] = field(default_factory=list)  # its "Hint:" lines, if any


@dataclass
class EagerRun:
    """One eager forward and backward of the model on one input."""

    x: list[float]
    output: list[float]
    nodes: list[str]  # the graph's node names, walked right after forward, from the loss down
    saved_after_forward: list[str]  # "node.saved" for every saved tensor, readable before backward
    freed_by_backward: list[str]  # the same, after backward: freed
    weight_grad: list[float]
    graph: AutogradGraph  # the graph walked after forward, its saved tensors marked freed by backward


@dataclass
class DynamicGraphFacts:
    eager_a: EagerRun
    eager_b: EagerRun
    shared_by_two_calls: list[str]  # nodes that two forward calls on A have in common
    saved_read_after_backward: Message  # reading a freed saved tensor
    # torch.jit.trace on A, then called on A and B
    jit_deprecation: Message  # the FutureWarning torch.jit.trace gives
    jit_warnings: list[Message]  # the TracerWarnings, once each
    jit_code: str  # the traced module's code
    jit_ops: list[str]  # the ATen ops the trace recorded, in order
    jit_output_a: list[float]
    jit_output_b: list[float]
    # torch.fx.symbolic_trace
    fx_error: Message
    # torch.compile and torch.export (both built on Dynamo); None where Dynamo is unsupported
    compile_supported: bool
    explain_graph_count: int | None = None
    explain_graph_breaks: list[Message] = field(default_factory=list)
    compiled_graphs: list[str] = field(default_factory=list)  # the code of each graph Dynamo captured
    graphs_compiled_per_call: dict[str, int] = field(default_factory=dict)  # for calls on A, B, A again
    compiled_output_a: list[float] = field(default_factory=list)
    compiled_output_b: list[float] = field(default_factory=list)
    export_error: Message | None = None  # torch.export.export, its default (non-strict) mode
    strict_export_error: Message | None = None  # torch.export.export(strict=True), which uses Dynamo


def forward_line(frames) -> str | None:
    """The last line of DataDependentModel.forward among the frames of a stack."""
    lines = [frame.line for frame in frames if frame.filename == FORWARD_FILE and frame.name == "forward"]
    return lines[-1] if lines else None


def message_of(error: BaseException) -> Message:
    text = str(error)
    frames = traceback.extract_tb(error.__traceback__) + list(getattr(error, "real_stack", None) or [])
    hints = [line.strip() for line in text.splitlines() if line.strip().startswith("Hint:")]
    return Message(type(error).__name__, text.splitlines()[0], forward_line(frames), hints)


def saved_tensors(graph: AutogradGraph, freed: bool) -> list[str]:
    """Every saved tensor as "node.saved_name": those still readable, or those freed."""
    return [
        f"{node.name}.{saved.name}"
        for node in graph.nodes
        for saved in node.saved
        if saved.freed == freed and (freed or saved.shape is not None)
    ]


def eager_run(model: nn.Module, x: torch.Tensor, tracer: Tracer = NO_TRACE) -> tuple[EagerRun, torch.Tensor]:
    y = model(x)  # the graph is built now, one node per operation that runs
    loss = y.sum()
    names = {"weight": model.weight, "y": y}
    # record_backward walks the graph now and marks, when backward is done, what it freed.
    with record_backward({"loss": loss}, names) as recording:
        saved_after_forward = saved_tensors(recording.graph, freed=False)
        with tracer.backward_of({"loss": loss}, names=names):
            loss.backward()
    run = EagerRun(
        x=x.tolist(),
        output=y.tolist(),
        nodes=[node.name for node in recording.graph.nodes],
        saved_after_forward=saved_after_forward,
        freed_by_backward=saved_tensors(recording.graph, freed=True),
        weight_grad=model.weight.grad.tolist(),
        graph=recording.graph,
    )
    model.weight.grad = None
    return run, y


def jit_trace(model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(model, (a,))  # runs forward on A and records the ops that ran
    deprecation = next(w for w in caught if issubclass(w.category, FutureWarning))
    tracer_warnings = {}
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            line = linecache.getline(w.filename, w.lineno).strip() if w.filename == FORWARD_FILE else None
            text = str(w.message).split(". ")[0]
            tracer_warnings.setdefault((text, line), Message(w.category.__name__, text, line))
    return dict(
        jit_deprecation=Message(deprecation.category.__name__, str(deprecation.message)),
        jit_warnings=list(tracer_warnings.values()),
        jit_code=traced.code.strip(),
        jit_ops=[node.kind() for node in traced.graph.nodes() if node.kind().startswith("aten::")],
        jit_output_a=traced(a).tolist(),
        jit_output_b=traced(b).tolist(),  # the recorded ops, whatever B's values say
    )


def fx_trace(model: nn.Module) -> Message:
    try:
        torch.fx.symbolic_trace(model)  # runs forward on Proxy objects that have no values
    except torch.fx.proxy.TraceError as error:
        return message_of(error)
    raise AssertionError("torch.fx.symbolic_trace should refuse a branch on a tensor's value")


@contextlib.contextmanager
def fresh_dynamo() -> Iterator[None]:
    """Start Dynamo with empty caches and leave it so; keep its logging off the terminal.

    Dynamo and torch.export log graph breaks and print partial graphs to stderr;
    the facts carry what they say, so the narrative stays readable.
    """
    torch._dynamo.reset()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        torch._dynamo.reset()


def dynamo_captures(model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> dict:
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return dict(compile_supported=False)
    with fresh_dynamo():
        explained = torch._dynamo.explain(model)(a)
    breaks = [
        Message("graph break", reason.reason.splitlines()[0], forward_line(reason.user_stack))
        for reason in explained.break_reasons
    ]

    graphs: list[str] = []

    def record_graph(graph_module: torch.fx.GraphModule, example_inputs) -> Callable:
        """A torch.compile backend that keeps each graph's code and runs it as it is."""
        graphs.append(graph_module.code.strip())
        return graph_module.forward

    compiled = torch.compile(model, backend=record_graph)
    per_call = {}
    with fresh_dynamo():
        output_a = compiled(a)
        per_call["A"] = len(graphs)
        output_b = compiled(b)  # the other branch and another loop count: new graphs
        per_call["B"] = len(graphs) - per_call["A"]
        compiled(a)  # everything for A is cached and its guards pass: nothing new
        per_call["A again"] = len(graphs) - per_call["A"] - per_call["B"]

    export_errors = []
    for strict in (False, True):
        with fresh_dynamo():
            try:
                torch.export.export(model, (a,), strict=strict)
            except Exception as error:  # the type differs between the two modes; both are facts
                export_errors.append(message_of(error))
            else:
                raise AssertionError("torch.export should refuse a branch on a tensor's value")
    return dict(
        compile_supported=True,
        explain_graph_count=explained.graph_count,
        explain_graph_breaks=breaks,
        compiled_graphs=graphs,
        graphs_compiled_per_call=per_call,
        compiled_output_a=output_a.tolist(),
        compiled_output_b=output_b.tolist(),
        export_error=export_errors[0],
        strict_export_error=export_errors[1],
    )


def dynamic_graph(device: str = "cpu", tracer: Tracer = NO_TRACE) -> DynamicGraphFacts:
    model = DataDependentModel().to(device)
    a = torch.tensor(INPUT_A, device=device)
    b = torch.tensor(INPUT_B, device=device)

    # Eager: each forward builds the graph of what ran; backward frees it.
    eager_a, y_a = eager_run(model, a, tracer)
    eager_b, _ = eager_run(model, b)
    y_a_again = model(a)
    first, second = autograd_nodes({"y": y_a}), autograd_nodes({"y": y_a_again})
    shared = [type(node).__name__ for node in first if any(node is other for other in second)]
    try:
        y_a.grad_fn._saved_other  # the last `h * 2` saved its 2; backward freed it
    except RuntimeError as error:
        saved_read_after_backward = Message(type(error).__name__, str(error).split(". ")[0])
    else:
        raise AssertionError("a saved tensor should be unreadable after backward")

    return DynamicGraphFacts(
        eager_a=eager_a,
        eager_b=eager_b,
        shared_by_two_calls=shared,
        saved_read_after_backward=saved_read_after_backward,
        **jit_trace(model, a, b),
        fx_error=fx_trace(model),
        **dynamo_captures(model, a, b),
    )


def at(message: Message) -> str:
    return f"{message.kind}: {message.text}" + (f"  (at `{message.line}`)" if message.line else "")


def narrate(facts: DynamicGraphFacts) -> Iterator[str]:
    yield "model: h = x * weight; if h.sum() > 0: h = relu(h) else: h = -h; then h = h * 2, int(max |x|) times"
    for label, run in (("A", facts.eager_a), ("B", facts.eager_b)):
        branch = next(name for name in run.nodes if name in ("ReluBackward0", "NegBackward0"))
        turns = run.nodes.count("MulBackward0") - 1  # one MulBackward0 is x * weight
        yield f"Eager, x = {label} = {run.x}: output {run.output}; {branch} from the branch, {turns} loop turns"
        yield f"  its graph, built by that forward: {run.nodes}"
    yield f"Two inputs, two graphs: the node lists differ = {facts.eager_a.nodes != facts.eager_b.nodes}"
    yield (
        f"Two calls on A build two graphs; the only node they share: {facts.shared_by_two_calls} "
        "(the weight's: it belongs to the leaf, not to a graph)"
    )
    yield f"Saved tensors, readable after forward (A): {facts.eager_a.saved_after_forward}"
    yield f"Freed by backward (A):                    {facts.eager_a.freed_by_backward}"
    yield f"Reading y.grad_fn._saved_other after backward: {at(facts.saved_read_after_backward)}"

    yield f"torch.jit.trace(model, A) is deprecated: {at(facts.jit_deprecation)}"
    for message in facts.jit_warnings:
        yield f"  it warns: {at(message)}"
    yield f"  and records only the ops that ran for A, no branch and no loop: {facts.jit_ops}"
    yield f"  traced(A) = {facts.jit_output_a}, the same as eager"
    yield f"  traced(B) = {facts.jit_output_b}, but eager B = {facts.eager_b.output}: silently wrong"

    yield f"torch.fx.symbolic_trace(model) refuses: {at(facts.fx_error)}"

    if not facts.compile_supported:
        yield "torch.compile and torch.export: Dynamo does not support this Python (is_dynamo_supported() is False)"
        return
    breaks = facts.explain_graph_breaks
    yield f"torch._dynamo.explain(model)(A): {facts.explain_graph_count} graphs, {len(breaks)} graph breaks:"
    for message in breaks:
        yield f"  {at(message)}"
    per_call = facts.graphs_compiled_per_call
    yield (
        f"torch.compile(model) captured {per_call['A']} graphs for A, {per_call['B']} more for B "
        f"(the other branch; a new loop count fails a guard, so it recompiles), {per_call['A again']} for A again"
    )
    yield (
        f"  compiled(A) = {facts.compiled_output_a}, compiled(B) = {facts.compiled_output_b}: "
        "the same as eager; Python runs the branch and the loop between the graphs"
    )
    yield f"torch.export.export(model, (A,)) refuses: {at(facts.export_error)}"
    yield f"  with strict=True (Dynamo): {at(facts.strict_export_error)}"
    for hint in facts.strict_export_error.hints:
        if "torch.cond" in hint:
            yield f"  {hint}"


def show_captures(facts: DynamicGraphFacts, console) -> None:
    """The --trace view: the two eager graphs side by side, then what each capture made of the model."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from traces.render.terminal import graph_tree

    graphs = Table(title="Eager: one graph per forward (after backward: saved tensors freed)", title_justify="left")
    for label, run in (("A", facts.eager_a), ("B", facts.eager_b)):
        graphs.add_column(f"x = {label} = {run.x}, output {run.output}")
    graphs.add_row(graph_tree(facts.eager_a.graph), graph_tree(facts.eager_b.graph))
    console.print(graphs)

    jit = Text(facts.jit_code + "\n\n")
    jit.append(f"traced(B) = {facts.jit_output_b}, eager B = {facts.eager_b.output}", style="bold red")
    console.print(Panel(jit, title="torch.jit.trace on A: the branch and the loop are baked in", title_align="left"))
    console.print(Panel(Text(at(facts.fx_error)), title="torch.fx.symbolic_trace: no graph", title_align="left"))
    if not facts.compile_supported:
        return
    dynamo = Text()
    first_for_b = facts.graphs_compiled_per_call["A"]
    for number, code in enumerate(facts.compiled_graphs):
        dynamo.append(f"graph {number + 1}, captured on {'A' if number < first_for_b else 'B'}\n", style="bold")
        dynamo.append(code + "\n\n")
    dynamo.append("\n".join(at(message) for message in facts.explain_graph_breaks) + "\n")
    dynamo.append(at(facts.export_error) + "\n" + at(facts.strict_export_error), style="bold red")
    title = "torch.compile: graphs split at graph breaks (A, then B); torch.export: refused"
    console.print(Panel(dynamo, title=title, title_align="left"))


def main(argv: list[str] | None = None) -> int:
    return run_scenario("dynamic_graph", dynamic_graph, narrate, doc=__doc__, show_trace=show_captures, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
