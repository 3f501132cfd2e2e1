"""Node hooks for the trace's backward recorder, which both engines run.

``node.register_prehook`` and ``node.register_hook`` keep a node's hooks in
C++; torch's engine runs them, and so does the Python engine
(traces/mirror/engine.py finds them with ``node_hook_dicts``). This module is the
recorder's one way to register both at once and remove them again; it stands
outside traces/mirror/engine.py so that the debugger extension, which steps into the
engine, steps past the recorder's use of it.
"""

from __future__ import annotations


class NodeHooksHandle:
    """Removes the hooks ``register_node_hooks`` added."""

    def __init__(self, torch_handles):
        self.torch_handles = torch_handles

    def remove(self) -> None:
        for handle in self.torch_handles:
            handle.remove()
        self.torch_handles = []


def register_node_hooks(node, pre_hook=None, post_hook=None) -> NodeHooksHandle:
    """``node.register_prehook(pre_hook)`` and ``node.register_hook(post_hook)``."""
    torch_handles = []
    if pre_hook is not None:
        torch_handles.append(node.register_prehook(pre_hook))
    if post_hook is not None:
        torch_handles.append(node.register_hook(post_hook))
    return NodeHooksHandle(torch_handles)
