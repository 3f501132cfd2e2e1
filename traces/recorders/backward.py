"""The backward view: the order in which the autograd engine ran the nodes, and the
gradients that arrived at and left each one.

Every node of the graph gets a pre-hook (called with the gradients arriving,
just before the node runs) and a hook (called with the gradients it computed
for its inputs, which leave along its edges). The hooks only read; they never
change a gradient, and all of them are removed when the ``with`` block ends.

A tensor hook (``tensor.register_hook``) may change a gradient between the node
that sent it and the node it arrives at: the engine runs those hooks just before
the node pre-hooks. So a gradient sent is kept until its node runs (where several
edges feed one input, a sample of its values), and when what arrives is not what
was sent (or the sum of what was sent), the step notes the gradient before the
hooks, and an edge that alone feeds its input shows the gradient that arrived,
noting what was sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from time import perf_counter_ns

import torch

from traces.data.graph import AutogradGraph, ModuleInfo, PlaceOf, autograd_nodes, describe_graph, saved_tensor_freed
from traces.data.tensors import TensorSummary, no_python_dispatch, summarize, tracer_at_work
from traces.data.trace import BackwardRecording, BackwardStep
from traces.mirror.engine import released
from traces.recorders.node_hooks import register_node_hooks


def _summaries(gradients) -> list[TensorSummary | None]:
    return [summarize(g) if g is not None else None for g in gradients]


SAMPLED = 16  # values of a gradient kept to compare, where several edges feed one input


def sample(gradient: torch.Tensor, diagonals: dict) -> torch.Tensor | None:
    """A few of a gradient's values, along its diagonal (no copy of the tensor): enough to tell
    whether a hook changed a sum of gradients, without holding on to the gradients themselves.
    ``diagonals`` keeps the positions for each shape."""
    if gradient.layout != torch.strided or gradient.numel() == 0:
        return None
    if gradient.dim() == 0:
        return gradient.detach().reshape(1).clone()
    shape = tuple(gradient.shape)
    positions = diagonals.get(shape)
    if positions is None:
        positions = diagonals[shape] = tuple(torch.linspace(0, size - 1, SAMPLED).long() for size in shape)
    with no_python_dispatch(gradient):
        return gradient.detach()[positions]


def changed_in_one(sent: tuple[torch.Tensor, TensorSummary], arrived: torch.Tensor) -> TensorSummary | None:
    """For an input fed by one edge: what was sent, if a hook made what arrived differ from it."""
    tensor, summary = sent
    if tensor is arrived:
        return None
    same_kind = tensor.shape == arrived.shape and tensor.dtype == arrived.dtype and tensor.layout == arrived.layout
    with no_python_dispatch(arrived):
        if same_kind and (tensor.layout != torch.strided or torch.equal(tensor, arrived)):
            return None  # a new tensor with the same values (a hook that copies)
    return summary


def changed_in_sum(
    sent: list[tuple[torch.Tensor | None, TensorSummary]], arrived: torch.Tensor, diagonals: dict
) -> TensorSummary | None:
    """For an input fed by several edges: what was sent, summed, if a hook changed the sum.
    The sampled values decide; the sum is known exactly only for small gradients (whose
    summaries hold every value), else it is described by its shape and dtype."""
    samples = [sampled for sampled, _ in sent]
    if any(sampled is None for sampled in samples) or arrived.layout != torch.strided:
        return None  # sparse gradients: not compared
    found = sample(arrived, diagonals)
    with no_python_dispatch(arrived):
        expected = samples[0]
        for more in samples[1:]:
            expected = expected + more
        if found is not None and found.shape == expected.shape:
            if torch.allclose(found.to(expected.dtype), expected, rtol=1e-4, atol=1e-6):
                return None
    summaries = [summary for _, summary in sent]
    if all(summary.values is not None for summary in summaries):
        total = torch.tensor(summaries[0].values)
        for summary in summaries[1:]:
            total = total + torch.tensor(summary.values)
        return TensorSummary(summaries[0].shape, summaries[0].dtype, values=total.tolist())
    return TensorSummary(summaries[0].shape, summaries[0].dtype)


def put_gradients_on_edges(graph: AutogradGraph, running: dict[str, BackwardStep]) -> None:
    """Each edge gets the gradient its source sent; an edge that alone feeds its input, the
    gradient that arrived, after any tensor hook, noting what was sent when a hook changed it."""
    feeding: dict[tuple[str, int], int] = {}  # (target, input) -> how many edges feed it
    for edge in graph.edges:
        feeding[(edge.target, edge.input_nr)] = feeding.get((edge.target, edge.input_nr), 0) + 1
    for edge in graph.edges:
        step = running.get(edge.source)
        if step is not None and edge.output_nr < len(step.leaving):
            edge.gradient = step.leaving[edge.output_nr]
        arrived = running.get(edge.target)
        if arrived is None or feeding[(edge.target, edge.input_nr)] != 1:
            continue
        hooked = arrived.before_hooks[edge.input_nr] if edge.input_nr < len(arrived.before_hooks) else None
        if hooked is not None:
            edge.hooked_from, edge.gradient = edge.gradient, arrived.arriving[edge.input_nr]


@contextmanager
def record_backward(
    outputs: Mapping[str, torch.Tensor],
    names: Mapping[str, torch.Tensor] | None = None,
    module_of: Mapping[int, str] | None = None,
    modules: list[ModuleInfo] | None = None,
    place_of: PlaceOf | None = None,
) -> Iterator[BackwardRecording]:
    """Record the graph behind ``outputs`` and every backward run inside the block.

    Usage::

        with record_backward({"y": y}, names={"w": w}) as recording:
            y.backward()
        recording.steps  # in execution order
    """
    with tracer_at_work():  # describing the graph is the tracer's work, not the code's
        fns = autograd_nodes(outputs)
        recording = BackwardRecording(graph=describe_graph(fns, outputs, names, module_of, modules, place_of))
    node_ids = [node.id for node in recording.graph.nodes]
    running: dict[str, BackwardStep] = {}  # node id -> its latest step
    started: dict[str, int] = {}  # node id -> perf_counter_ns() when it began to run
    # Gradients sent but not yet arrived, with their summaries: (id of the node they go to, its
    # input) -> [(what to compare, summary), ...]. An input fed by one edge keeps the tensor (the
    # engine keeps it too); one fed by several keeps a sample of each, not the tensors.
    in_flight: dict[tuple[int, int], list[tuple[torch.Tensor | None, TensorSummary]]] = {}
    feeding: dict[tuple[int, int], int] = {}
    diagonals: dict[tuple[int, ...], tuple[torch.Tensor, ...]] = {}  # see sample()
    for fn in fns:
        for next_fn, input_nr in fn.next_functions:
            if next_fn is not None:
                feeding[(id(next_fn), input_nr)] = feeding.get((id(next_fn), input_nr), 0) + 1

    def before(fn, node_id: str, name: str):
        key = id(fn)

        def pre_hook(grad_outputs):
            with tracer_at_work():
                arriving, before_hooks = [], []
                for slot, arrived in enumerate(grad_outputs):
                    sent = in_flight.pop((key, slot), None)
                    if sent and len(sent) == 1 and sent[0][0] is arrived:  # as it was sent: summarised then
                        arriving.append(sent[0][1])
                        before_hooks.append(None)
                        continue
                    arriving.append(summarize(arrived) if arrived is not None else None)
                    if not sent or arrived is None:
                        before_hooks.append(None)
                    elif feeding.get((key, slot), 0) == 1:
                        before_hooks.append(changed_in_one(sent[0], arrived))
                    else:
                        before_hooks.append(changed_in_sum(sent, arrived, diagonals))
                step = BackwardStep(len(recording.steps), node_id, name, arriving, before_hooks=before_hooks)
                recording.steps.append(step)
                running[node_id] = step
                started[node_id] = perf_counter_ns()  # last: the summaries above are the tracer's time

        return pre_hook

    def after(fn, node_id: str):
        targets = [(slot, id(next_fn), input_nr) for slot, (next_fn, input_nr) in enumerate(fn.next_functions) if next_fn]

        def hook(grad_inputs, grad_outputs):
            ended = perf_counter_ns()  # first: what follows is the tracer's time
            with tracer_at_work():
                step = running[node_id]
                step.time_ns = ended - started.pop(node_id, ended)
                leaving = step.leaving = _summaries(grad_inputs)
                for slot, target, input_nr in targets:
                    gradient = grad_inputs[slot] if slot < len(grad_inputs) else None
                    if gradient is not None:
                        kept = gradient if feeding[(target, input_nr)] == 1 else sample(gradient, diagonals)
                        in_flight.setdefault((target, input_nr), []).append((kept, leaving[slot]))

        return hook

    handles = []
    try:
        with tracer_at_work():
            for fn, node_id in zip(fns, node_ids):
                # Both engines call them: torch's, and the Python one (traces/mirror/engine.py).
                handles.append(register_node_hooks(fn, before(fn, node_id, type(fn).__name__), after(fn, node_id)))
        yield recording
    finally:
        in_flight.clear()
        with tracer_at_work():
            for handle in handles:
                handle.remove()
        put_gradients_on_edges(recording.graph, running)
        # Backward frees what the nodes saved (unless retain_graph=True): show it. A node
        # frees all its saved tensors at once, so one of them tells.
        with tracer_at_work():
            for fn, node in zip(fns, recording.graph.nodes):
                tensors = [saved for saved in node.saved if saved.shape is not None or saved.packed is not None]
                # traces/mirror/engine.py cannot free a node's saved tensors; it marks the node released.
                if tensors and not tensors[0].freed and (saved_tensor_freed(fn, tensors[0].name) or released(fn)):
                    for saved in tensors:
                        saved.freed = True
