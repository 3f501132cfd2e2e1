"""A second, independent record of the order in which the autograd engine ran the nodes.

``EngineOrderWitness`` is a Tracer that, around the backward it is asked to trace,
also registers node pre-hooks of its own on every node it finds by its own walk of
``next_functions``, and notes each node as the engine reaches it. A test compares
that order with the trace's backward view, node by node.
"""

from __future__ import annotations

from contextlib import contextmanager

from traces import Tracer
from traces.data.graph import autograd_nodes


def reachable_nodes(outputs) -> list:
    """Every node behind the outputs, by a plain depth-first walk (any order will do)."""
    seen, stack, nodes = set(), [t.grad_fn for t in outputs.values() if t.grad_fn is not None], []
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        nodes.append(fn)
        stack.extend(next_fn for next_fn, _ in fn.next_functions if next_fn is not None)
    return nodes


class EngineOrderWitness(Tracer):
    """A Tracer that also records, with hooks of its own, the node ids in the order the engine ran them."""

    def __init__(self) -> None:
        super().__init__()
        self.engine_order: list[str] = []

    def backward_of(self, outputs, names=None):
        return self._witnessed(outputs, names)

    @contextmanager
    def _witnessed(self, outputs, names):
        # The trace names node i of traces.data.graph.autograd_nodes "n{i}": the same names here.
        node_id = {id(fn): f"n{index}" for index, fn in enumerate(autograd_nodes(outputs))}
        handles = []
        for fn in reachable_nodes(outputs):
            name = node_id[id(fn)]
            handles.append(fn.register_prehook(lambda grad_outputs, name=name: self.engine_order.append(name)))
        try:
            with super().backward_of(outputs, names) as recording:
                yield recording
        finally:
            for handle in handles:
                handle.remove()

    def traced_order(self) -> list[str]:
        return [step.node for step in self.backward_recording.steps]
