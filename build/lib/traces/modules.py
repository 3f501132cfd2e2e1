"""Which ``nn.Module`` made each autograd node, so a model's graph can be grouped.

A global forward hook runs after every module's forward. From the module's
output it walks back through the graph to the module's inputs: the nodes on
the way that no inner module claimed yet were made by this module. Inner
modules finish first, so each node goes to the innermost module that made it,
and a parameter's ``AccumulateGrad`` to the module that owns the parameter.
"""

from __future__ import annotations

from torch import nn

from traces.tensors import iter_tensors


class ModuleRecorder:
    def __init__(self) -> None:
        self._made_by: dict[int, tuple[object, nn.Module]] = {}  # id(node) -> (node, module)
        self._modules: dict[int, nn.Module] = {}  # every module whose forward ran
        self._handle = None

    def start(self) -> None:
        self._handle = nn.modules.module.register_module_forward_hook(self._after_forward)

    def stop(self) -> None:
        """Remove the hook; safe to call more than once."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _after_forward(self, module: nn.Module, inputs, output) -> None:
        self._modules[id(module)] = module
        inputs = list(iter_tensors(inputs))
        input_nodes = {id(t.grad_fn) for t in inputs if t.grad_fn is not None}
        input_leaves = {id(t) for t in inputs}
        queue = [t.grad_fn for t in iter_tensors(output) if t.grad_fn is not None]
        seen = set()
        while queue:
            fn = queue.pop()
            if id(fn) in seen or id(fn) in input_nodes or id(getattr(fn, "variable", None)) in input_leaves:
                continue
            seen.add(id(fn))
            self._made_by.setdefault(id(fn), (fn, module))
            queue.extend(next_fn for next_fn, _ in fn.next_functions if next_fn is not None)

    def module_names(self) -> dict[int, str]:
        """id(node) -> the qualified name of the module that made it.

        A module called at the top level is named by its class (``NeuralNetwork``);
        the modules inside it by their attribute path (``linear_relu_stack.0``).
        """
        inner_names: dict[int, str] = {}
        for module in self._modules.values():
            for name, inner in module.named_modules():
                # Seen from the outermost module, the name is the longest.
                if len(name) > len(inner_names.get(id(inner), "")):
                    inner_names[id(inner)] = name
        names = {}
        for node_id, (_, module) in self._made_by.items():
            names[node_id] = inner_names.get(id(module), type(module).__name__)
        return names
