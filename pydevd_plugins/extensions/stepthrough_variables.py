"""What VSCode's Variables pane, hover and Watch show for tensors and autograd nodes.

Plain functions, no debugger in sight: ``one_line(value)`` is the value's line,
``children(value)`` what it expands to, as ``(name, value, evaluate_suffix)``
in display order. ``pydevd_plugin_torch_stepthrough`` hands them to debugpy.
What they say about a tensor or a node comes from the project's tracing library
(``describe``, ``saved_for_backward``), the same description the trace prints.

The library is loaded privately. This extension runs inside every debugged
program, and ``traces`` is a name a program may well have for a module of its
own (a ``traces.py`` beside the script). Importing ``traces`` here would run that
file, or later hand the program our package in place of its own. So ``library``
loads the two modules the pane needs, traces/data/tensors.py and traces/data/graph.py,
straight from the folder next to this extension, as ``_stepthrough_traces.tensors``
and ``_stepthrough_traces.graph`` under a package made here (the library's
``__init__`` and its recorders are not run). Both modules import each other
relatively (``from .tensors import ...``), so they find each other under that
name. Nothing is ever put under ``traces``, and no module of the program is run.
(The private copy keeps its own ``tracer_at_work`` flag: a running tracer does not
see its reads anyway, which go past every dispatch mode.)

torch is never imported here: a value can only be a tensor once the program has
imported torch. The library is loaded when the extension starts if the program
already imported torch (an attach), else on the first tensor shown (~10 ms).

Every line is at most LINE_LIMIT characters and says how much it leaves out; a
child list longer than PAGE is shown a page at a time.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.machinery
import importlib.util
import sys
import warnings
from pathlib import Path

# How many values a large tensor's "values" child shows.
PREVIEW_VALUES = 10
# The longest line the pane shows; a longer one ends saying how many characters it left out.
LINE_LIMIT = 200
# The most children one expansion shows; a longer list is split into pages of pages.
PAGE = 100
# How many items of a list, tuple or dict are looked at for a tensor.
LOOKED_AT = 100

# The private name of the project's tracing library inside the debugged process, and its folder
# (traces/data/ in site-packages/traces next to site-packages/pydevd_plugins, or in the project's traces/).
PRIVATE_PACKAGE = "_stepthrough_traces"
LIBRARY_DIR = Path(__file__).resolve().parents[2] / "traces" / "data"


def library(name: str):
    """The project's ``traces/data/<name>.py`` as ``_stepthrough_traces.<name>``, loaded once."""
    module = sys.modules.get(f"{PRIVATE_PACKAGE}.{name}")
    if module is not None:
        return module
    if PRIVATE_PACKAGE not in sys.modules:
        spec = importlib.machinery.ModuleSpec(PRIVATE_PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [str(LIBRARY_DIR)]
        sys.modules[PRIVATE_PACKAGE] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"{PRIVATE_PACKAGE}.{name}")


def load_library_if_torch_is_here() -> None:
    """Load what the pane needs now, while the program runs, where torch is already imported."""
    if "torch" in sys.modules:
        library("graph")


class Note(str):
    """A line of text shown as it is: no quotes, nothing to expand."""


class AllAttributes:
    """A tensor's or node's "all attributes" child: every attribute, as stock debugpy
    lists them, with an attribute that raises shown as its error in one line."""

    def __init__(self, owner) -> None:
        self.owner = owner


class Page:
    """One page of a long child list (``next_functions[100:200]``): its items, shown when expanded."""

    def __init__(self, items: list[tuple[str, object, str | None]]) -> None:
        self.items = items


def is_tensor_type(type_object) -> bool:
    torch = sys.modules.get("torch")
    tensor = getattr(torch, "Tensor", None)
    return tensor is not None and isinstance(type_object, type) and issubclass(type_object, tensor)


def is_node_type(type_object) -> bool:
    """An autograd node: ``grad_fn`` and everything in ``next_functions``."""
    graph = sys.modules.get("torch.autograd.graph")
    node = getattr(graph, "Node", None)
    return node is not None and isinstance(type_object, type) and issubclass(type_object, node)


def is_container_type(type_object) -> bool:
    """A list, tuple, dict or dataclass: given a line of its own where it holds tensors."""
    return isinstance(type_object, type) and (
        issubclass(type_object, (list, tuple, dict)) or dataclasses.is_dataclass(type_object)
    )


def has_one_line(type_object) -> bool:
    return (
        is_tensor_type(type_object)
        or is_node_type(type_object)
        or is_container_type(type_object)
        or (isinstance(type_object, type) and issubclass(type_object, (Note, AllAttributes, Page)))
    )


def has_children(type_object) -> bool:
    return is_tensor_type(type_object) or is_node_type(type_object) or type_object in (AllAttributes, Page)


def one_line(value) -> str | None:
    """The value's line, at most LINE_LIMIT characters; None for a container without tensors
    (stock debugpy shows it)."""
    if isinstance(value, Note):
        return capped(str.__str__(value))
    if isinstance(value, AllAttributes):
        return f"{len(dir(value.owner))} attributes"
    if isinstance(value, Page):
        return f"{len(value.items)} items"
    if is_node_type(type(value)):
        return capped(node_line(value))
    if is_tensor_type(type(value)):
        with no_torch_function():
            return capped(library("tensors").describe(value))
    return container_line(value)


def no_torch_function():
    """Around the debugger's reads of a tensor: a subclass's ``__torch_function__`` (the
    program's code) is not run for them; the tensor is read as the memory it is."""
    return sys.modules["torch"]._C.DisableTorchFunctionSubclass()


def capped(line: str, limit: int = LINE_LIMIT) -> str:
    """``line``, or its first characters and how many more there were."""
    if len(line) <= limit:
        return line
    kept = limit - 30
    return f"{line[:kept]}… ({len(line) - kept} more characters)"


def children(value) -> list[tuple[str, object, str | None]]:
    if isinstance(value, AllAttributes):
        return all_attributes(value.owner)
    if isinstance(value, Page):
        return paged(value.items)
    if is_node_type(type(value)):
        return node_children(value)
    with no_torch_function():
        return tensor_children(value)


def paged(items: list[tuple[str, object, str | None]], page: int = PAGE) -> list[tuple[str, object, str | None]]:
    """``items`` when there are at most ``page`` of them; else at most ``page`` pages, each
    named for its first and last item (``next_functions[0..99]``), holding pages in turn."""
    if len(items) <= page:
        return items
    size = page
    while len(items) > size * page:
        size *= page
    return [
        (f"{items[start][0]} … {items[min(start + size, len(items)) - 1][0]}", Page(items[start : start + size]), None)
        for start in range(0, len(items), size)
    ]


def repr_is_safe(value) -> bool:
    """Whether torch's own repr may read this tensor's data (not where its storage was freed),
    or the data of the tensors in this list, tuple, dict or dataclass."""
    if is_tensor_type(type(value)):
        return library("tensors").storage_missing(value) is None
    items = container_items(value)
    return items is None or all(repr_is_safe(item) for _, item in items if is_tensor_type(type(item)))


# -- tensors ---------------------------------------------------------------------------


def tensor_children(tensor) -> list[tuple[str, object, str | None]]:
    """What matters first, in this order; every attribute in the last child."""
    tensors = library("tensors")
    torch = sys.modules["torch"]
    functorch = torch._C._functorch
    grad = tensors.readable_grad(tensor)
    if grad is None and not (tensor.is_leaf or tensor.retains_grad):
        grad = Note("None: not kept for a non-leaf (call retain_grad() before backward)")
    version = tensors.version_of(tensor)
    found = [
        ("shape", tensor.shape, ".shape"),
        ("dtype", tensor.dtype, ".dtype"),
        ("device", tensor.device, ".device"),
        ("requires_grad", tensor.requires_grad, ".requires_grad"),
        ("is_leaf", tensor.is_leaf, ".is_leaf"),
        ("grad_fn", tensor.grad_fn, ".grad_fn"),
        ("grad", grad, ".grad" if not isinstance(grad, Note) else None),
        ("version", version if version is not None else Note("none: an inference tensor"), "._version"),
    ]
    if functorch.is_functorch_wrapped_tensor(tensor):
        found.append(("level", functorch.maybe_get_level(tensor), None))
        if functorch.is_batchedtensor(tensor):
            found.append(("batch dim", functorch.maybe_get_bdim(tensor), None))
        found.append(("unwrapped", functorch.get_unwrapped(tensor), None))
    if tensor._is_view():
        found.append(("base (a view of it)", tensor._base, "._base"))
    if tensor.layout == torch.strided:
        found += [
            ("stride", _or_error(tensor.stride), ".stride()"),
            ("is_contiguous", _or_error(tensor.is_contiguous), ".is_contiguous()"),
        ]
    else:
        found.append(("stride", Note(f"none: a {str(tensor.layout).removeprefix('torch.')} tensor has no strides"), None))
    found.append(("values", values_preview(tensor), None))
    hooks = {**(tensor._backward_hooks or {}), **(getattr(tensor, "_post_accumulate_grad_hooks", None) or {})}
    if hooks:
        found.append(("hooks", hooks, None))
    found.append(("all attributes", AllAttributes(tensor), ""))
    return found


def values_preview(tensor) -> Note:
    """The values of a small tensor; the first PREVIEW_VALUES of a large one, read without a copy."""
    tensors = library("tensors")
    if not tensors.has_own_values(tensor):
        return Note(f"not read: {why_not_read(tensor)}")
    if tensor.numel() <= tensors.LINE_VALUES:
        return Note(tensors.format_values(tensors.small_values(tensor)))
    shown = tensors.first_values(tensor, PREVIEW_VALUES)
    return Note(f"{tensors.format_values(shown)[:-1]}, ...] first {len(shown)} of {tensor.numel()}")


def why_not_read(tensor) -> str:
    torch = sys.modules["torch"]
    tensors = library("tensors")
    if tensor.device.type == "meta":
        return "a meta tensor has no values"
    if torch._C._functorch.is_functorch_wrapped_tensor(tensor):
        return "wrapped by a torch.func transform"
    if type(tensor).__torch_dispatch__ is not torch._C._disabled_torch_dispatch_impl:
        return f"a {type(tensor).__name__}: its values are not plain memory"
    if torch._is_functional_tensor(tensor):
        return "a functional tensor: its values are not plain memory"
    if tensor.device.type != "cpu":
        return f"on {tensor.device} (reading would wait for the device)"
    if tensor.layout != torch.strided:
        return f"{str(tensor.layout).removeprefix('torch.')} layout"
    if tensor.is_nested:
        return "a nested tensor"
    if tensor.is_quantized:
        return "a quantized tensor"
    return tensors.storage_missing(tensor) or "not plain memory"


# -- containers -------------------------------------------------------------------------


def container_line(value) -> str | None:
    """``list[3]: Tensor[64, 512] float32, Tensor[512] float32, 3``: for a list, tuple,
    dict or dataclass that holds a tensor; None (stock debugpy's repr) for any other."""
    items = container_items(value)
    if items is None or not any(is_tensor_type(type(item)) for _, item in items):
        return None
    if dataclasses.is_dataclass(value):
        head, total, texts = type(value).__name__, len(items), ((f"{name}=", item) for name, item in items)
    else:
        head, total = f"{type(value).__name__}[{len(value)}]", len(value)
        texts = ((f"{key!r}: " if isinstance(value, dict) else "", item) for key, item in items)
    with no_torch_function():
        return listed(f"{head}: ", (label + short(item) for label, item in texts), total)


def container_items(value) -> list[tuple[object, object]] | None:
    """The first LOOKED_AT (key, item) pairs of a list, tuple, dict or dataclass; None for anything else."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        pairs = ((field.name, getattr(value, field.name, None)) for field in dataclasses.fields(value))
    elif isinstance(value, dict):
        pairs = iter(value.items())
    elif isinstance(value, (list, tuple)):
        pairs = enumerate(value)
    else:
        return None
    return [pair for _, pair in zip(range(LOOKED_AT), pairs)]


def listed(head: str, texts, total: int, limit: int = LINE_LIMIT) -> str:
    """``head`` and the texts, comma-separated, as many as fit in ``limit``; then how many more."""
    line = head
    shown = 0
    for text in texts:
        if len(line) + len(text) > limit - 20:
            break
        line += text if shown == 0 else ", " + text
        shown += 1
    if shown < total:
        line += f", … ({total - shown} more)" if shown else f"… ({total} more)"
    return line


def short(item) -> str:
    """An item of a container in a few words: a tensor's type, shape and dtype; a container's
    type and length; anything else its repr, cut at 40 characters."""
    if is_tensor_type(type(item)):
        tensors = library("tensors")
        return f"{tensors.type_name(item)}{tensors.shape_text(item.shape)} {tensors.dtype_name(item)}"
    if isinstance(item, (list, tuple, dict)):
        return f"{type(item).__name__}[{len(item)}]"
    if is_node_type(type(item)):
        return type(item).__name__
    return capped(repr(item), 40)


# -- autograd nodes ----------------------------------------------------------------------


def node_line(fn) -> str:
    """``MulBackward0 · next: AddBackward0, AddBackward0``; an AccumulateGrad names its leaf."""
    graph = library("graph")
    leaf = getattr(fn, "variable", None)
    if leaf is not None:
        return f"{type(fn).__name__} for {library('tensors').tensor_header(leaf)}"
    freed = any(value is graph.FREED for value in graph.saved_for_backward(fn).values())
    tail = " · saved values freed" if freed else ""
    head = f"{type(fn).__name__} · next: "
    following = fn.next_functions
    names = (type(next_fn).__name__ if next_fn is not None else "None" for next_fn, _ in following)
    return (listed(head, names, len(following), LINE_LIMIT - len(tail)) if following else head + "none") + tail


def node_children(fn) -> list[tuple[str, object, str | None]]:
    """Name, the nodes gradients flow on to, the leaf (AccumulateGrad), what was saved, hooks."""
    graph = library("graph")
    found: list[tuple[str, object, str | None]] = [("name", fn.name(), ".name()")]
    found += paged(
        [
            (f"next_functions[{index}]", next_fn, f".next_functions[{index}][0]")
            for index, (next_fn, _) in enumerate(fn.next_functions)
        ]
    )
    leaf = getattr(fn, "variable", None)
    if leaf is not None:
        found.append(("variable", leaf, ".variable"))
    for name, value in graph.saved_for_backward(fn).items():
        if isinstance(value, graph.NotRead):
            found.append((f"saved {name}", Note(str(value)), None))
        else:
            found.append((f"saved {name}", value, f"._saved_{name}" if hasattr(fn, f"_saved_{name}") else None))
    found.append(("hooks", node_hooks(fn), None))
    found.append(("all attributes", AllAttributes(fn), ""))
    return found


def node_hooks(fn) -> object:
    """The node's own hooks (``register_prehook``, ``register_hook``, found with
    ``graph.node_hook_dicts``) and, for an AccumulateGrad, its leaf's tensor hooks. A
    non-leaf tensor's hooks (``tensor.register_hook``) are on that tensor."""
    graph = library("graph")
    hooks: dict = {}
    leaf = getattr(fn, "variable", None)
    if leaf is not None:
        hooks.update(leaf._backward_hooks or {})
        hooks.update(getattr(leaf, "_post_accumulate_grad_hooks", None) or {})
    try:
        pre_hooks, post_hooks = graph.node_hook_dicts(fn)
    except Exception as error:  # a node of a kind that takes no hooks, or a torch that hides them
        return hooks or Note(f"not read: {type(error).__name__}: {error}")
    hooks.update({f"pre-hook {key}": hook for key, hook in (pre_hooks or {}).items()})
    hooks.update({f"hook {key}": hook for key, hook in (post_hooks or {}).items()})
    return hooks or Note("none on the leaf" if leaf is not None else "none")


# -- every attribute ---------------------------------------------------------------------


def all_attributes(owner) -> list[tuple[str, object, str | None]]:
    """Every name in ``dir(owner)`` with its value; one that raises shows its error in one line."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # x.T on a 1-d tensor, .grad of a non-leaf: not the program's warnings
        for name in dir(owner):
            try:
                value = getattr(owner, name)
            except Exception as error:
                message = str(error).strip().splitlines()
                value = Note(f"{type(error).__name__}: {message[0] if message else ''}")
            found.append((name, value, f".{name}"))
    return found


def _or_error(method) -> object:
    try:
        return method()
    except Exception as error:
        return Note(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
