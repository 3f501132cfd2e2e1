"""The backward view: the order in which the autograd engine ran the nodes, and the
gradients that arrived at and left each one.

Every node of the graph gets a pre-hook (called with the gradients arriving,
just before the node runs) and a hook (called with the gradients it computed
for its inputs, which leave along its edges). The hooks only read; they never
change a gradient, and all of them are removed when the ``with`` block ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from traces.graph import AutogradGraph, autograd_nodes, describe_graph, read_saved_values
from traces.tensors import TensorSummary, summarize, tracer_at_work


@dataclass
class BackwardStep:
    order: int  # 0 for the first node the engine ran
    node: str  # the node's id in the graph
    name: str
    arriving: list[TensorSummary | None]  # gradients w.r.t. the node's outputs
    leaving: list[TensorSummary | None] = field(default_factory=list)  # one per edge slot


@dataclass
class BackwardRecording:
    graph: AutogradGraph
    steps: list[BackwardStep] = field(default_factory=list)


def _summaries(gradients) -> list[TensorSummary | None]:
    return [summarize(g) if g is not None else None for g in gradients]


@contextmanager
def record_backward(
    outputs: Mapping[str, torch.Tensor],
    names: Mapping[str, torch.Tensor] | None = None,
    module_of: Mapping[int, str] | None = None,
) -> Iterator[BackwardRecording]:
    """Record the graph behind ``outputs`` and every backward run inside the block.

    Usage::

        with record_backward({"y": y}, names={"w": w}) as recording:
            y.backward()
        recording.steps  # in execution order
    """
    fns = autograd_nodes(outputs)
    recording = BackwardRecording(graph=describe_graph(fns, outputs, names, module_of))
    node_ids = [node.id for node in recording.graph.nodes]
    running: dict[str, BackwardStep] = {}  # node id -> its latest step

    def before(node_id: str, name: str):
        def pre_hook(grad_outputs):
            step = BackwardStep(len(recording.steps), node_id, name, _summaries(grad_outputs))
            recording.steps.append(step)
            running[node_id] = step

        return pre_hook

    def after(node_id: str):
        def hook(grad_inputs, grad_outputs):
            running[node_id].leaving = _summaries(grad_inputs)

        return hook

    handles = []
    try:
        with tracer_at_work():
            for fn, node_id in zip(fns, node_ids):
                handles.append(fn.register_prehook(before(node_id, type(fn).__name__)))
                handles.append(fn.register_hook(after(node_id)))
        yield recording
    finally:
        with tracer_at_work():
            for handle in handles:
                handle.remove()
        for edge in recording.graph.edges:
            step = running.get(edge.source)
            if step is not None and edge.output_nr < len(step.leaving):
                edge.gradient = step.leaving[edge.output_nr]
        # Backward frees what the nodes saved (unless retain_graph=True): show it.
        for fn, node in zip(fns, recording.graph.nodes):
            freed_now = {saved.name for saved in read_saved_values(fn) if saved.freed}
            for saved in node.saved:
                saved.freed = saved.name in freed_now
