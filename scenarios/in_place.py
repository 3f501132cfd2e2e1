"""In-place operations and version counters: how autograd notices a tensor that changed.

Each in-place kernel that writes a tensor adds one to its version counter
(`_version`): t.add_(1), t[0] = 5 and t.mul_(2) add one each. A composite in-place
function may write several times (nn.init.orthogonal_ adds 2, nn.init.sparse_ on
four columns 5), and one that only changes metadata adds none (requires_grad_(),
detach_()). A view shares one counter with its base. A node that saves a tensor for backward
notes its version; if the tensor is changed in place before backward, backward
raises, naming both versions, while changing a tensor that no node saved is fine.
An in-place op on a non-leaf becomes its new grad_fn; on a view of one, the base's
grad_fn becomes CopySlices. On a leaf that requires grad, or a view of one, torch
refuses the op before it runs, whether or not any graph uses the leaf; under
torch.no_grad() the op is allowed, not recorded, and the tensor stays a leaf.
`.data` and `detach()` both share the storage, but only `detach()` shares the
version counter: a change through `.data` slips past the check, and backward
silently returns a wrong gradient when the node uses the changed values (mul saved
w and uses it: 2 * 10w), the right one when they do not matter (abs's gradient,
sign(w), is the same after w.data.mul_(10)). `detach_()` on a view is refused.

In the debugger: put a breakpoint in torch/autograd/graph.py `_engine_run_backward`,
which every backward() passes on its way to the C++ engine (six times here). At
the second and the sixth stop, `Variable._execution_engine.run_backward(...)` raises
the RuntimeError naming the versions: the engine checks each saved tensor's version
when the node unpacks it. Watch `h._version` and `h.grad_fn` in the Variables pane
as each in-place line runs, and run with --trace to see the version each saved
tensor was saved at.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer

VERSION_ERROR = "one of the variables needed for gradient computation has been modified by an inplace operation"
INPLACE_LEAF_ERROR = "a leaf Variable that requires grad is being used in an in-place operation."
INPLACE_VIEW_OF_LEAF_ERROR = "a view of a leaf Variable that requires grad is being used in an in-place operation."
DETACH_VIEW_ERROR = "Can't detach views in-place. Use detach() instead."


@dataclass
class InPlaceFacts:
    versions: dict[str, int]  # t._version after each line
    version_added: dict[str, int]  # how much each call added to _version
    view_and_base_versions: dict[str, list[int]]  # [v._version, t._version] after each line
    grad_fn_before_in_place: str  # h = w * 2
    grad_fn_after_in_place: str  # after h.add_(1): the in-place op is h's node now
    grad_fn_after_in_place_feeds: str  # ... and the old node is behind it
    base_grad_fn_after_view_change: str  # g = w * 2; g[:2].mul_(10): g's grad_fn
    copy_slices_feeds: str  # the node CopySlices passes the rest of the gradient to
    saved_version: int  # the version at which g * g saved g (g changed once before)
    grad_through_copy_slices: list[float]  # y = (g * g).sum(): dy/dw = 2g * dg/dw
    saved_then_changed_error: str  # backward after changing a tensor a node saved
    reading_saved_after_change_error: str  # reading the node's _saved_self runs the same check
    unsaved_then_changed_grad: list[float]  # (s + 1).sum() saved nothing: changing s is fine
    leaf_error: str  # w.add_(1)
    view_of_leaf_error: str  # w[:2].mul_(2)
    no_grad_values: list[float]  # w.add_(1) under torch.no_grad()
    no_grad_version: int
    no_grad_is_leaf: bool
    no_grad_requires_grad: bool
    data_shares_storage: bool
    detach_shares_storage: bool
    data_shares_version: bool  # writing through .data bumped w._version
    detach_shares_version: bool  # writing through detach() bumped w._version
    correct_grad: list[float]  # of y = (w * w).sum() at the w it was computed from: 2w
    grad_after_data_change: list[float]  # backward after w.data.mul_(10): 2 * (10w), no error
    abs_correct_grad: list[float]  # of w.abs().sum() at w = [1, -2, 3]: sign(w)
    abs_grad_after_data_change: list[float]  # after w.data.mul_(10): the same, right
    detach_change_error: str  # backward after w.detach().mul_(10)
    detach_in_place_error: str  # a view's detach_()
    detach_in_place_on_non_view: list[bool]  # [is_leaf, requires_grad] after k.detach_()


def version_error(error: RuntimeError) -> str:
    """The version error up to its hint: which tensor, its version now, the version saved."""
    return str(error).split(" Hint:")[0]


def in_place(device: str = "cpu", tracer: Tracer = NO_TRACE) -> InPlaceFacts:
    # 1. Every in-place op bumps the tensor's version counter; an out-of-place op does not.
    t = torch.zeros(3, device=device)
    versions = {"t = torch.zeros(3)": t._version}
    t.add_(1)
    versions["t.add_(1)"] = t._version
    t[0] = 5.0  # indexing assignment is an in-place copy_ into a view of t
    versions["t[0] = 5"] = t._version
    t.mul_(2)
    versions["t.mul_(2)"] = t._version
    t.add(1)  # out of place: returns a new tensor, t is untouched
    versions["t.add(1)"] = t._version

    # Not every in-place call adds exactly one: count what each adds.
    version_added = {}
    for line, change, tensor in [
        ("nn.init.orthogonal_(q)", torch.nn.init.orthogonal_, torch.empty(3, 3, device=device)),
        ("nn.init.sparse_(m, 0.5) on 4 columns", lambda m: torch.nn.init.sparse_(m, 0.5), torch.empty(4, 4, device=device)),
        ("r.requires_grad_()", torch.Tensor.requires_grad_, torch.ones(3, device=device)),
        ("r.detach_()", torch.Tensor.detach_, torch.ones(3, device=device)),
    ]:
        before = tensor._version
        change(tensor)
        version_added[line] = tensor._version - before

    # 2. A view and its base share one version counter.
    v = t[1:]
    view_and_base = {"v = t[1:]": [v._version, t._version]}
    v.add_(1)
    view_and_base["v.add_(1)"] = [v._version, t._version]
    t.add_(1)
    view_and_base["t.add_(1)"] = [v._version, t._version]

    # 3. In place on a non-leaf: the op becomes its grad_fn. On a view of it: CopySlices.
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    h = w * 2
    grad_fn_before = type(h.grad_fn).__name__
    h.add_(1)
    grad_fn_after, feeds = type(h.grad_fn).__name__, type(h.grad_fn.next_functions[0][0]).__name__

    g = w * 2
    g[:2].mul_(10)  # g is [20, 40, 6] now, at version 1
    y = (g * g).sum()  # saves g (as self and other) at version 1: still valid for backward
    saved_version = y.grad_fn.next_functions[0][0]._saved_self._version
    with tracer.backward_of({"y": y}, names={"w": w, "g": g}):
        y.backward()
    grad_through_copy_slices = w.grad.tolist()

    # 4. Changing a tensor that a node saved makes backward raise; one it did not save, not.
    s = w * 2
    product = (s * s).sum()  # MulBackward0 saved s at version 0
    s.add_(1)  # version 1
    try:
        product.backward()
    except RuntimeError as error:
        saved_then_changed_error = version_error(error)
    else:
        raise AssertionError("backward through a tensor changed since it was saved should fail")
    try:
        product.grad_fn.next_functions[0][0]._saved_self
    except RuntimeError as error:
        reading_saved_error = version_error(error)
    else:
        raise AssertionError("reading a saved tensor changed since it was saved should fail")

    w.grad = None
    s = w * 2
    total = (s + 1).sum()  # AddBackward0 saves no tensor
    s.add_(1)
    total.backward()
    unsaved_then_changed_grad = w.grad.tolist()

    # 5. In place on a leaf that requires grad, or on a view of one: refused before it runs,
    # though no graph uses w here. Under torch.no_grad(): allowed, and w stays a leaf.
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    try:
        w.add_(1)
    except RuntimeError as error:
        leaf_error = str(error)
    else:
        raise AssertionError("an in-place op on a leaf that requires grad should fail")
    try:
        w[:2].mul_(2)
    except RuntimeError as error:
        view_of_leaf_error = str(error)
    else:
        raise AssertionError("an in-place op on a view of a leaf that requires grad should fail")
    with torch.no_grad():
        w.add_(1)

    # 6. .data versus detach(): both share w's storage; only detach() shares its version counter.
    w_data = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    y_data = (w_data * w_data).sum()  # saves w_data at version 0
    correct_grad = (2 * w_data).tolist()  # dy/dw at the values y was computed from
    data = w_data.data
    data_shares_storage = data.data_ptr() == w_data.data_ptr()
    data.mul_(10)  # bumps data's own counter, not w_data's
    data_shares_version = w_data._version == 1
    y_data.backward()  # no error: the check sees version 0
    grad_after_data_change = w_data.grad.tolist()

    w_abs = torch.tensor([1.0, -2.0, 3.0], requires_grad=True, device=device)
    y_abs = w_abs.abs().sum()  # AbsBackward0 saves w_abs; its gradient is sign(w_abs)
    abs_correct_grad = torch.sign(w_abs).tolist()
    w_abs.data.mul_(10)  # the check misses it again, but the signs stay
    y_abs.backward()
    abs_grad_after_data_change = w_abs.grad.tolist()

    w_detached = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    y_detached = (w_detached * w_detached).sum()
    detached = w_detached.detach()
    detach_shares_storage = detached.data_ptr() == w_detached.data_ptr()
    detached.mul_(10)  # bumps the counter it shares with w_detached
    detach_shares_version = w_detached._version == 1
    try:
        y_detached.backward()
    except RuntimeError as error:
        detach_change_error = version_error(error)
    else:
        raise AssertionError("backward after changing a saved tensor through detach() should fail")

    # 7. detach_() detaches the tensor itself; a view cannot be detached in place.
    k = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device) * 2
    try:
        k[1:].detach_()
    except RuntimeError as error:
        detach_in_place_error = str(error).split(" If you are using")[0]
    else:
        raise AssertionError("detach_() on a view should fail")
    k.detach_()

    return InPlaceFacts(
        versions=versions,
        version_added=version_added,
        view_and_base_versions=view_and_base,
        grad_fn_before_in_place=grad_fn_before,
        grad_fn_after_in_place=grad_fn_after,
        grad_fn_after_in_place_feeds=feeds,
        base_grad_fn_after_view_change=type(g.grad_fn).__name__,
        copy_slices_feeds=type(g.grad_fn.next_functions[0][0]).__name__,
        saved_version=saved_version,
        grad_through_copy_slices=grad_through_copy_slices,
        saved_then_changed_error=saved_then_changed_error,
        reading_saved_after_change_error=reading_saved_error,
        unsaved_then_changed_grad=unsaved_then_changed_grad,
        leaf_error=leaf_error,
        view_of_leaf_error=view_of_leaf_error,
        no_grad_values=w.tolist(),
        no_grad_version=w._version,
        no_grad_is_leaf=w.is_leaf,
        no_grad_requires_grad=w.requires_grad,
        data_shares_storage=data_shares_storage,
        detach_shares_storage=detach_shares_storage,
        data_shares_version=data_shares_version,
        detach_shares_version=detach_shares_version,
        correct_grad=correct_grad,
        grad_after_data_change=grad_after_data_change,
        abs_correct_grad=abs_correct_grad,
        abs_grad_after_data_change=abs_grad_after_data_change,
        detach_change_error=detach_change_error,
        detach_in_place_error=detach_in_place_error,
        detach_in_place_on_non_view=[k.is_leaf, k.requires_grad],
    )


def narrate(facts: InPlaceFacts) -> Iterator[str]:
    yield "1. Each in-place kernel that writes bumps the tensor's version counter once; an out-of-place op does not:"
    yield "   " + ", ".join(f"{line} -> t._version = {version}" for line, version in facts.versions.items())
    yield "   Composite ones may write several times, metadata-only ones not at all (what each call added):"
    yield "   " + ", ".join(f"{line} +{added}" for line, added in facts.version_added.items())
    yield "2. A view and its base share one counter ([v._version, t._version]):"
    yield "   " + ", ".join(f"{line} -> {versions}" for line, versions in facts.view_and_base_versions.items())
    yield (
        f"3. h = w * 2 has grad_fn {facts.grad_fn_before_in_place}; after h.add_(1) it is"
        f" {facts.grad_fn_after_in_place}, which feeds {facts.grad_fn_after_in_place_feeds}"
    )
    yield (
        f"   g = w * 2; g[:2].mul_(10) changes g through a view: g.grad_fn is {facts.base_grad_fn_after_view_change},"
        f" which feeds {facts.copy_slices_feeds}"
    )
    yield (
        f"   y = (g * g).sum() saves g at version {facts.saved_version}, so backward works:"
        f" w.grad = {facts.grad_through_copy_slices}  (dy/dg = 2g = [40, 80, 12] times dg/dw = [20, 20, 2])"
    )
    yield "4. Changing a tensor a node saved: s = w * 2; product = (s * s).sum(); s.add_(1); product.backward() fails:"
    yield f"   RuntimeError: {facts.saved_then_changed_error}"
    yield f"   Reading product's saved s (MulBackward0._saved_self) makes the same check: {facts.reading_saved_after_change_error}"
    yield (
        f"   Changing one no node saved is fine: total = (s + 1).sum(); s.add_(1); total.backward()"
        f" gives w.grad = {facts.unsaved_then_changed_grad}"
    )
    yield f"5. w.add_(1) on a leaf that requires grad fails, though no graph uses w: RuntimeError: {facts.leaf_error}"
    yield f"   w[:2].mul_(2), on a view of it: RuntimeError: {facts.view_of_leaf_error}"
    yield (
        f"   Under torch.no_grad(), w.add_(1) works: w = {facts.no_grad_values}, w._version = {facts.no_grad_version},"
        f" is_leaf = {facts.no_grad_is_leaf}, requires_grad = {facts.no_grad_requires_grad}"
    )
    yield (
        f"6. Share w's storage: w.data {facts.data_shares_storage}, w.detach() {facts.detach_shares_storage};"
        f" share w's version counter (a change through them bumps w._version): w.data {facts.data_shares_version},"
        f" w.detach() {facts.detach_shares_version}"
    )
    yield (
        f"   y = (w * w).sum() saves w; w changed in place (mul_(10)) before y.backward();"
        f" the right gradient, 2w at the values y was computed from, is {facts.correct_grad}:"
    )
    yield f"   through w.data:     w.grad = {facts.grad_after_data_change}, silently wrong (mul uses the changed w)"
    yield f"   through w.detach(): RuntimeError: {facts.detach_change_error}"
    yield (
        f"   but y = w.abs().sum() at w = [1, -2, 3], then w.data.mul_(10): w.grad = {facts.abs_grad_after_data_change},"
        f" right (sign(w) = {facts.abs_correct_grad} did not change)"
    )
    is_leaf, requires_grad = facts.detach_in_place_on_non_view
    yield f"7. k = w * 2; k[1:].detach_() on a view fails: RuntimeError: {facts.detach_in_place_error}"
    yield f"   k.detach_() detaches k itself: is_leaf = {is_leaf}, requires_grad = {requires_grad}"


def main(argv: list[str] | None = None) -> int:
    return run_scenario("in_place", in_place, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
