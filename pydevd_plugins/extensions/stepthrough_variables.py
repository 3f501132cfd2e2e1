"""What VSCode's Variables pane, hover and Watch show for tensors and autograd nodes.

Plain functions, no debugger in sight: ``one_line(value)`` is the value's line,
``children(value)`` what it expands to, as ``(name, value, evaluate_suffix)``
in display order. ``pydevd_plugin_torch_stepthrough`` hands them to debugpy.
What they say about a tensor or a node comes from ``traces`` (``describe``,
``saved_for_backward``), the same description the trace prints.

torch is never imported here: a value can only be a tensor once the program has
imported torch, and ``traces`` is imported on the first tensor shown.
"""

from __future__ import annotations

import sys
import warnings

# How many values a large tensor's "values" child shows.
PREVIEW_VALUES = 10


class Note(str):
    """A line of text shown as it is: no quotes, nothing to expand."""


class AllAttributes:
    """A tensor's or node's "all attributes" child: every attribute, as stock debugpy
    lists them, with an attribute that raises shown as its error in one line."""

    def __init__(self, owner) -> None:
        self.owner = owner


def is_tensor_type(type_object) -> bool:
    torch = sys.modules.get("torch")
    tensor = getattr(torch, "Tensor", None)
    return tensor is not None and isinstance(type_object, type) and issubclass(type_object, tensor)


def is_node_type(type_object) -> bool:
    """An autograd node: ``grad_fn`` and everything in ``next_functions``."""
    graph = sys.modules.get("torch.autograd.graph")
    node = getattr(graph, "Node", None)
    return node is not None and isinstance(type_object, type) and issubclass(type_object, node)


def has_one_line(type_object) -> bool:
    return (
        is_tensor_type(type_object)
        or is_node_type(type_object)
        or (isinstance(type_object, type) and issubclass(type_object, (Note, AllAttributes)))
    )


def has_children(type_object) -> bool:
    return is_tensor_type(type_object) or is_node_type(type_object) or type_object is AllAttributes


def one_line(value) -> str:
    if isinstance(value, Note):
        return str.__str__(value)
    if isinstance(value, AllAttributes):
        return f"{len(dir(value.owner))} attributes"
    if is_node_type(type(value)):
        return node_line(value)
    from traces.tensors import describe

    return describe(value)


def children(value) -> list[tuple[str, object, str | None]]:
    if isinstance(value, AllAttributes):
        return all_attributes(value.owner)
    if is_node_type(type(value)):
        return node_children(value)
    return tensor_children(value)


# -- tensors ---------------------------------------------------------------------------


def tensor_children(tensor) -> list[tuple[str, object, str | None]]:
    """What matters first, in this order; every attribute in the last child."""
    from traces.tensors import readable_grad, version_of

    grad = readable_grad(tensor)
    if grad is None and not (tensor.is_leaf or tensor.retains_grad):
        grad = Note("None: not kept for a non-leaf (call retain_grad() before backward)")
    version = version_of(tensor)
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
    if tensor._is_view():
        found.append(("base (a view of it)", tensor._base, "._base"))
    found += [
        ("stride", _or_error(tensor.stride), ".stride()"),
        ("is_contiguous", _or_error(tensor.is_contiguous), ".is_contiguous()"),
        ("values", values_preview(tensor), None),
    ]
    if tensor._backward_hooks:
        found.append(("hooks", tensor._backward_hooks, "._backward_hooks"))
    found.append(("all attributes", AllAttributes(tensor), ""))
    return found


def values_preview(tensor) -> Note:
    """The values of a small tensor; the first PREVIEW_VALUES of a large one, read without a copy."""
    from traces.tensors import LINE_VALUES, first_values, format_values, has_own_values, small_values

    if not has_own_values(tensor):
        return Note(f"not read: {why_not_read(tensor)}")
    if tensor.numel() <= LINE_VALUES:
        return Note(format_values(small_values(tensor)))
    shown = first_values(tensor, PREVIEW_VALUES)
    return Note(f"{format_values(shown)[:-1]}, ...] first {len(shown)} of {tensor.numel()}")


def why_not_read(tensor) -> str:
    if tensor.device.type == "meta":
        return "a meta tensor has no values"
    if tensor.device.type != "cpu":
        return f"on {tensor.device} (reading would wait for the device)"
    if tensor.layout != sys.modules["torch"].strided:
        return f"{str(tensor.layout).removeprefix('torch.')} layout"
    if tensor.is_quantized:
        return "a quantized tensor"
    if type(tensor).__name__ not in ("Tensor", "Parameter"):
        return f"a {type(tensor).__name__}: its values are not plain memory"
    return "wrapped by a torch.func transform"


# -- autograd nodes ----------------------------------------------------------------------


def node_line(fn) -> str:
    """``MulBackward0 · next: AddBackward0, AddBackward0``; an AccumulateGrad names its leaf."""
    from traces.graph import FREED, saved_for_backward
    from traces.tensors import tensor_header

    leaf = getattr(fn, "variable", None)
    if leaf is not None:
        return f"{type(fn).__name__} for {tensor_header(leaf)}"
    names = [type(next_fn).__name__ if next_fn is not None else "None" for next_fn, _ in fn.next_functions]
    line = f"{type(fn).__name__} · next: {', '.join(names) or 'none'}"
    if any(value is FREED for value in saved_for_backward(fn).values()):
        line += " · saved values freed"
    return line


def node_children(fn) -> list[tuple[str, object, str | None]]:
    """Name, the nodes gradients flow on to, the leaf (AccumulateGrad), what was saved, hooks."""
    from traces.graph import NotRead, saved_for_backward

    found: list[tuple[str, object, str | None]] = [("name", fn.name(), ".name()")]
    for index, (next_fn, _) in enumerate(fn.next_functions):
        found.append((f"next_functions[{index}]", next_fn, f".next_functions[{index}][0]"))
    leaf = getattr(fn, "variable", None)
    if leaf is not None:
        found.append(("variable", leaf, ".variable"))
    for name, value in saved_for_backward(fn).items():
        if isinstance(value, NotRead):
            found.append((f"saved {name}", Note(str(value)), None))
        else:
            found.append((f"saved {name}", value, f"._saved_{name}" if hasattr(fn, f"_saved_{name}") else None))
    found.append(("hooks", node_hooks(fn), None))
    found.append(("all attributes", AllAttributes(fn), ""))
    return found


def node_hooks(fn) -> object:
    """The hooks Python can see: an AccumulateGrad's leaf's tensor hooks. A node's own
    hooks (``register_hook``, ``register_prehook``) live in C++, where Python cannot list them."""
    leaf = getattr(fn, "variable", None)
    if leaf is not None:
        hooks = {**(leaf._backward_hooks or {}), **(getattr(leaf, "_post_accumulate_grad_hooks", None) or {})}
        return hooks or Note("none on the leaf")
    return Note("not listed: torch keeps a node's own hooks in C++")


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
