"""Node hooks that both autograd engines run: torch's C++ one and traces/mirror/engine.py.

torch keeps ``node.register_prehook`` and ``node.register_hook`` in C++, where
Python cannot list them, so the Python engine cannot find them. Code that wants
its node hooks run by both engines (the trace's backward recorder) registers
them here. A module of its own, outside traces/mirror/engine.py, so that the debugger
extension, which steps into the engine, steps past the recorder's use of it.
"""

from __future__ import annotations

# Node hooks for the Python engine, by node: torch keeps ``node.register_prehook``
# and ``node.register_hook`` in C++, where Python cannot list them, so code that
# wants its node hooks run by both engines registers them with
# ``register_node_hooks`` (the trace's backward recorder does).
NODE_HOOKS: dict = {}  # node -> list of [pre_hook, post_hook]


class NodeHooksHandle:
    """Removes the hooks ``register_node_hooks`` added, from both engines."""

    def __init__(self, node, entry, torch_handles):
        self.node, self.entry, self.torch_handles = node, entry, torch_handles

    def remove(self) -> None:
        for handle in self.torch_handles:
            handle.remove()
        entries = NODE_HOOKS.get(self.node, [])
        if self.entry in entries:
            entries.remove(self.entry)
        if not entries:
            NODE_HOOKS.pop(self.node, None)
        self.torch_handles = []


def register_node_hooks(node, pre_hook=None, post_hook=None) -> NodeHooksHandle:
    """``node.register_prehook(pre_hook)`` and ``node.register_hook(post_hook)``,
    also seen by the Python engine."""
    torch_handles = []
    if pre_hook is not None:
        torch_handles.append(node.register_prehook(pre_hook))
    if post_hook is not None:
        torch_handles.append(node.register_hook(post_hook))
    entry = [pre_hook, post_hook]
    NODE_HOOKS.setdefault(node, []).append(entry)
    return NodeHooksHandle(node, entry, torch_handles)
