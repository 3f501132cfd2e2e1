"""Which ``nn.Module`` made each autograd node, so a model's graph can be grouped.

A global forward pre-hook notes, before each module's forward runs, the nodes
behind its input tensors; a global forward hook runs after it. From the
module's output the hook walks back through the graph to those inputs: the
nodes on the way that no inner module claimed yet were made by this module.
Inner modules finish first, so each node goes to the innermost module that
made it, and a parameter's ``AccumulateGrad`` to the module that owns the
parameter. The inputs are taken before forward runs because an in-place
operation (``nn.ReLU(inplace=True)``) gives its input tensor a new node; the
hook also sees keyword arguments (``block(x=h)``).

Inside code that ``torch.compile`` is compiling the hooks do nothing, so
that they cause no graph break: a compiled model's nodes belong to the
compiled module as a whole.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from traces.graph import ModuleInfo
from traces.places import users_line
from traces.tensors import iter_tensors, tracer_at_work


COMPILE_HOOK_WARNING = r"Using `torch.compile\(module\)` when there are global hooks on modules"


def is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return compiler is not None and compiler.is_compiling()


class ModuleRecorder:
    def __init__(self) -> None:
        self._made_by: dict[int, tuple[object, nn.Module]] = {}  # id(node) -> (node, module)
        self._modules: dict[int, nn.Module] = {}  # every module whose forward ran, in the order first called
        self._called_at: dict[int, tuple[str, int] | None] = {}  # id(module) -> the user's line that first called it
        self._inputs: dict[int, list[set[int]]] = {}  # id(module) -> per running call: ids of its input nodes
        self._handles: list = []
        self._filter = None  # the warnings filter this recorder added

    def start(self) -> None:
        self._handles = [
            nn.modules.module.register_module_forward_pre_hook(self._before_forward),
            nn.modules.module.register_module_forward_hook(self._after_forward, with_kwargs=True),
        ]
        # torch.compile(module) warns that global hooks fire once more for the compiled
        # module: the tracer's hooks know, and the code's output stays its own.
        warnings.filterwarnings("ignore", message=COMPILE_HOOK_WARNING)
        self._filter = warnings.filters[0]

    def stop(self) -> None:
        """Remove the hooks; safe to call more than once."""
        if self._filter in warnings.filters:
            warnings.filters.remove(self._filter)
            getattr(warnings, "_filters_mutated", lambda: None)()  # so that the change is seen
        self._filter = None
        for handle in self._handles:
            handle.remove()
            # Removing the handle leaves its with_kwargs mark behind (torch 2.14 forgets it),
            # and torch.compile then still sees a global hook: remove it too.
            nn.modules.module._global_forward_hooks_with_kwargs.pop(handle.id, None)
        self._handles = []

    def _before_forward(self, module: nn.Module, args) -> None:
        if is_compiling():
            return
        with tracer_at_work():
            if id(module) not in self._modules:
                self._modules[id(module)] = module
                self._called_at[id(module)] = users_line()
            self._inputs.setdefault(id(module), []).append(input_nodes(args))

    def _after_forward(self, module: nn.Module, args, kwargs, output) -> None:
        if is_compiling():
            return
        with tracer_at_work():
            self._claim(module, args, kwargs, output)

    def _claim(self, module: nn.Module, args, kwargs, output) -> None:
        """The nodes between the module's inputs and its output that no inner module claimed are its own."""
        calls = self._inputs.get(id(module))
        # The inputs as they were before forward; a keyword argument's as it is now.
        boundary = (calls.pop() if calls else input_nodes(args)) | input_nodes(kwargs)
        queue = [t.grad_fn for t in iter_tensors(output) if t.grad_fn is not None]
        seen = set()
        while queue:
            fn = queue.pop()
            if id(fn) in seen or id(fn) in boundary or id(getattr(fn, "variable", None)) in boundary:
                continue
            seen.add(id(fn))
            self._made_by.setdefault(id(fn), (fn, module))
            queue.extend(next_fn for next_fn, _ in fn.next_functions if next_fn is not None)

    def roots(self) -> list[nn.Module]:
        """The outermost modules that ran: those that ran and are inside no other that ran."""
        inside: set[int] = set()
        for module in self._modules.values():  # an outer module is called (and listed) before its insides
            if id(module) not in inside:
                inside.update(id(sub) for sub in module.modules() if sub is not module)
        return [module for module in self._modules.values() if id(module) not in inside]

    def parameter_names(self) -> dict[str, torch.Tensor]:
        """The parameters of the modules that ran, by their names in the outermost module."""
        names: dict[str, torch.Tensor] = {}
        for root in self.roots():
            for name, parameter in original(root).named_parameters():
                names.setdefault(name, parameter)
        return names

    def _names(self) -> tuple[dict[int, str], dict[int, str | None]]:
        """id(module) -> its name, and -> the name of the module it sits in.

        A module called at the top level is named by its class (``NeuralNetwork``);
        the modules inside it by their attribute path (``linear_relu_stack.0``).
        """
        names: dict[int, str] = {}
        parents: dict[int, str | None] = {}
        root_classes: dict[str, int] = {}
        for root in self.roots():
            root_name = type(original(root)).__name__
            root_classes[root_name] = root_classes.get(root_name, 0) + 1
            if root_classes[root_name] > 1:  # two outermost modules of one class: Linear, Linear (2)
                root_name += f" ({root_classes[root_name]})"
            names[id(root)], parents[id(root)] = root_name, None  # a compiled module is named as what it compiles
            for path, module in original(root).named_modules():
                if id(module) in names:
                    continue
                names[id(module)] = path or root_name
                parents[id(module)] = None if not path else (path.rpartition(".")[0] or root_name)
        return names, parents

    def module_names(self) -> dict[int, str]:
        """id(node) -> the name of the module that made it."""
        names, _ = self._names()
        return {node_id: names.get(id(module), type(module).__name__) for node_id, (_, module) in self._made_by.items()}

    def module_infos(self) -> list[ModuleInfo]:
        """The outermost modules that ran and every module inside them, each outer one before
        the ones inside it, in the order the outermost were first called."""
        names, parents = self._names()
        infos: dict[str, ModuleInfo] = {}
        for root in self.roots():
            for inner in root.modules():  # a compiled module, then the module it compiles: one name
                name = names.get(id(inner))
                if name is not None and name not in infos:
                    path, line = self._called_at.get(id(inner)) or (None, None)
                    infos[name] = ModuleInfo(name, kind_of(inner), parents[id(inner)], path, line)
        return list(infos.values())


def original(module: nn.Module) -> nn.Module:
    """The module a ``torch.compile``d module compiles (``_orig_mod``); any other module itself."""
    compiled = getattr(module, "_orig_mod", None)
    return compiled if isinstance(compiled, nn.Module) else module


def kind_of(module: nn.Module) -> str:
    """The module's class; for a ``torch.compile``d module, the class it compiles."""
    if original(module) is not module:
        return f"compiled {type(original(module)).__name__}"
    return type(module).__name__


def input_nodes(value) -> set[int]:
    """ids of the nodes behind the tensors in ``value``, and of the tensors themselves (for leaves)."""
    ids = set()
    for tensor in iter_tensors(value):
        ids.add(id(tensor))
        if tensor.grad_fn is not None:
            ids.add(id(tensor.grad_fn))
    return ids
