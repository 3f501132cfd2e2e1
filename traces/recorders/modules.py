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

Modules are known by identity, and named the way the user would write them:
one model alone keeps the names it always had (its class, and attribute paths
inside it: ``linear_relu_stack.0``); where several outermost modules ran (a
GAN's ``G`` and ``D``, ``checkpoint_sequential``'s blocks, two heads), each is
named by the variable the user's code held it in when it was first called
(``D``, or ``model.2`` for a block of ``model``; its class where no variable
holds it), and everything inside it after that name (``D.0``, ``D.0.weight``),
so that no two models share a name.

Inside code that ``torch.compile`` is compiling the hooks do nothing, so
that they cause no graph break: a compiled model's nodes belong to the
compiled module as a whole.
"""

from __future__ import annotations

import sys
import warnings

import torch
from torch import nn

from traces.basics.places import users_frame, users_line
from traces.data.graph import ModuleInfo
from traces.data.tensors import iter_tensors, tracer_at_work

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
        # id(module) -> the modules the user's code held in variables when it was first called, by name
        self._variables: dict[int, dict[str, nn.Module]] = {}
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
                self._variables[id(module)] = module_variables(users_frame(sys._getframe(1)))
            if id(module) not in self._called_at:
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
            self._made_by.setdefault(id(fn), (fn, self._hook_owner(fn) or module))
            queue.extend(next_fn for next_fn, _ in fn.next_functions if next_fn is not None)

    def _hook_owner(self, fn) -> nn.Module | None:
        """For the node a full backward hook puts on a module's output (made after the forward
        hooks ran, so the module's own claim missed it): that module, the one behind it."""
        if type(fn).__name__ != "BackwardHookFunctionBackward" or id(fn) in self._made_by:
            return None
        return next((self._made_by[id(n)][1] for n, _ in fn.next_functions if n is not None and id(n) in self._made_by), None)

    def roots(self) -> list[nn.Module]:
        """The outermost modules that ran: those that ran and are inside no other that ran."""
        inside: set[int] = set()
        for module in self._modules.values():  # an outer module is called (and listed) before its insides
            if id(module) not in inside:
                inside.update(id(sub) for sub in module.modules() if sub is not module)
        return [module for module in self._modules.values() if id(module) not in inside]

    def new_pass(self) -> None:
        """A backward pass before the traced one ended: a module's line is where the traced pass calls it."""
        self._called_at.clear()

    def parameter_names(self) -> dict[str, torch.Tensor]:
        """The parameters of the modules that ran, by their names in the outermost module (after
        that module's name, where several ran: ``D.0.weight``)."""
        names: dict[str, torch.Tensor] = {}
        root_names, several = self._root_names(), self._several()
        for root in self.roots():
            prefix = root_names[id(root)] + "." if several else ""
            for name, parameter in original(root).named_parameters():
                names.setdefault(prefix + name, parameter)
        return names

    def _several(self) -> bool:
        """Whether several outermost modules made nodes and have names inside them (submodules or
        parameters) that could be the same: then each is named after its model. A module that
        made no node (torch's own, like a compiled model's GraphModule), or has nothing inside
        to name (a loss module, ``nn.CrossEntropyLoss()``), does not count."""
        makers = {id(module) for _, module in self._made_by.values()}

        def counts(root: nn.Module) -> bool:
            inside = original(root)
            has_names = next(inside.parameters(), None) is not None or len(list(inside.modules())) > 1
            return has_names and any(id(inner) in makers for inner in root.modules())

        return sum(counts(root) for root in self.roots()) > 1

    def _root_names(self) -> dict[int, str]:
        """id(root) -> its name: its class when it ran alone; else the user's variable, or the class
        numbered (``Linear``, ``Linear (2)``) where none holds it."""
        roots = self.roots()
        several = self._several()
        names: dict[int, str] = {}
        taken: dict[str, int] = {}
        for root in roots:
            name = type(original(root)).__name__
            if several:
                name = variable_name(root, self._variables.get(id(root), {})) or name
            taken[name] = taken.get(name, 0) + 1
            names[id(root)] = name if taken[name] == 1 else f"{name} ({taken[name]})"
        return names

    def _names(self) -> tuple[dict[int, str], dict[int, str | None]]:
        """id(module) -> its name, and -> the name of the module it sits in.

        A module called at the top level is named by its class (``NeuralNetwork``);
        the modules inside it by their attribute path (``linear_relu_stack.0``).
        Where several models made nodes, each by its variable and the paths inside it
        after that name (``D``, ``D.0``).
        """
        names: dict[int, str] = {}
        parents: dict[int, str | None] = {}
        root_names, several = self._root_names(), self._several()
        for root in self.roots():
            root_name = root_names[id(root)]
            prefix = root_name + "." if several else ""  # several models: each inside its own name
            names[id(root)], parents[id(root)] = root_name, None  # a compiled module is named as what it compiles
            for path, module in original(root).named_modules():
                if id(module) in names:
                    continue
                names[id(module)] = prefix + path if path else root_name
                parents[id(module)] = None if not path else (prefix + path.rpartition(".")[0] if "." in path else root_name)
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


def module_variables(frame) -> dict[str, nn.Module]:
    """The modules a frame of the user's code holds in variables, its locals first, by name."""
    if frame is None:
        return {}
    found: dict[str, nn.Module] = {}
    for scope in (frame.f_locals, frame.f_globals):
        for name, value in list(scope.items()):
            if isinstance(value, nn.Module) and not name.startswith("_"):
                found.setdefault(name, value)
    return found


def variable_name(module: nn.Module, variables: dict[str, nn.Module]) -> str | None:
    """The path the user would write for ``module``: the variable holding it (``D``), or the
    path to it inside a module a variable holds (``model.2``); None where neither is found."""
    for name, value in variables.items():
        if value is module:
            return name
    for name, value in variables.items():
        for path, inner in value.named_modules():
            if inner is module and path:
                return f"{name}.{path}"
    return None


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
