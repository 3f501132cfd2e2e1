"""Leaf tensors: which tensors keep a .grad, and why an optimizer updates under no_grad.

is_leaf is True for every tensor that does not require grad, made by an operation
or not (c and n below), and for a tensor that requires grad only when no recorded
operation made it: one you create with requires_grad=True (not its .double(), a
recorded op), or a computed tensor that needed none until requires_grad_(). Backward stores
gradients only in leaves that require grad; a non-leaf's .grad stays None
(reading it warns and names retain_grad()), unless retain_grad() asks to keep it
(on a leaf, retain_grad() does nothing). A tensor hook sees the gradient without
keeping it; a tensor hook on a leaf runs before its .grad is written, and a hook
registered with register_post_accumulate_grad_hook runs after (it gets the leaf,
whose .grad is there to read: what optimizers fused into backward use); on a
non-leaf, which has no .grad, torch refuses it. requires_grad can be changed only on a leaf, and only a floating point
(or complex) tensor can require grad.

In grad mode torch refuses an in-place op on a leaf that requires grad (or on a
view of one) before it runs, whether or not a graph still uses the leaf: an
in-place op is recorded by becoming the tensor's grad_fn (see in_place.py), and a
leaf that requires grad has none, its gradient goes into .grad. A leaf that needs
no grad, like d below, changes in place freely. Under torch.no_grad() nothing is recorded, so
the change is allowed and bumps the leaf's version counter: that is how
optimizer.step() works. detach() gives a leaf that shares the storage and the
version counter, so a write through it bumps w's version too (w.data would not).

In the debugger: put a breakpoint on `y.backward()`, step in (F11) to
torch/_tensor.py `Tensor.backward`; then put one in the `remember` hook below
and look at the call stack: the engine calls it from inside backward.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer

INPLACE_LEAF_ERROR = "a leaf Variable that requires grad is being used in an in-place operation"
NONLEAF_GRAD_WARNING = "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed"
RETAIN_GRAD_ERROR = "can't retain_grad on Tensor that has requires_grad=False"
NONLEAF_REQUIRES_GRAD_ERROR = "you can only change requires_grad flags of leaf variables."
POST_ACCUMULATE_NON_LEAF_ERROR = "post accumulate grad hooks cannot be registered on non-leaf tensors"
INTEGER_REQUIRES_GRAD_ERROR = "Only Tensors of floating point and complex dtype can require gradients"


@dataclass
class LeafFacts:
    leaves: dict[str, bool]  # is_leaf of each tensor
    requires_grad: dict[str, bool]
    w_grad: list[float]  # a leaf that requires grad gets its gradient
    h_grad_is_none: bool  # a non-leaf does not
    h_grad_warning: str  # ...and reading its .grad says so
    k_grad: list[float]  # retain_grad() kept this non-leaf's gradient
    retains_grad: dict[str, bool]  # k after k.retain_grad(); h; w after w.retain_grad() (a no-op on a leaf)
    hook_saw: list[float]  # a hook on h saw its gradient while backward ran, kept nothing
    hook_order: list[str]  # the hooks in the order backward ran them, with what w.grad was then
    post_accumulate_on_non_leaf_error: str  # h.register_post_accumulate_grad_hook(...)
    retain_grad_error: str  # c.retain_grad(): c does not require grad
    nonleaf_requires_grad_error: str  # h.requires_grad_(False)
    integer_requires_grad_error: str  # torch.tensor([1, 2, 3], requires_grad=True)
    inplace_error: str  # w.add_(1) on a leaf that requires grad
    w_after_no_grad_step: list[float]  # w -= 0.25 * w.grad under torch.no_grad()
    still_leaf_after_step: bool
    w_version_after_step: int  # the step was an in-place change: 0 -> 1
    detached_is_leaf: bool
    detached_requires_grad: bool
    detached_shares_storage: bool  # same data_ptr as w
    w_after_writing_detached: list[float]  # writing d[0] changed w[0]
    w_version_after_writing_detached: int  # d shares w's version counter: 1 -> 2


def leaf_gradients(device: str = "cpu", tracer: Tracer = NO_TRACE) -> LeafFacts:
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)  # a leaf you made
    c = torch.ones(3, device=device)  # also a leaf, but it needs no gradient
    n = c * 2  # made by an operation, but needing no gradient: a leaf as well
    h = w * 2  # made by an operation on w, so it requires grad: not a leaf
    k = h + c
    k.retain_grad()  # ask backward to keep k's gradient
    w.retain_grad()  # a leaf keeps its gradient anyway: this does nothing

    hook_saw = []
    hook_order = []

    def remember(gradient):
        hook_saw.extend(gradient.tolist())  # returning None leaves the gradient unchanged
        hook_order.append("hook on h")

    def before_accumulation(gradient):
        hook_order.append(f"hook on w: w.grad = {w.grad}")  # not written yet

    def after_accumulation(leaf):
        hook_order.append(f"post-accumulate hook on w: w.grad = {leaf.grad.tolist()}")  # written now

    h.register_hook(remember)
    w.register_hook(before_accumulation)
    w.register_post_accumulate_grad_hook(after_accumulation)
    y = (k * k).sum()
    with tracer.backward_of({"y": y}, names={"w": w, "c": c, "h": h, "k": k}):
        y.backward()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h_grad = h.grad  # None, and a UserWarning that names retain_grad()
    h_grad_warning = next(str(warning.message) for warning in caught if warning.category is UserWarning)

    # What autograd refuses, each with its RuntimeError.
    try:
        h.register_post_accumulate_grad_hook(after_accumulation)  # h has no .grad to be written
    except RuntimeError as error:
        post_accumulate_on_non_leaf_error = str(error)
    else:
        raise AssertionError("a post-accumulate-grad hook on a non-leaf should fail")
    try:
        c.retain_grad()  # c needs no gradient: there is nothing to keep
    except RuntimeError as error:
        retain_grad_error = str(error)
    else:
        raise AssertionError("retain_grad() on a tensor that does not require grad should fail")
    try:
        h.requires_grad_(False)  # h's requires_grad follows from w's; only a leaf's can be set
    except RuntimeError as error:
        nonleaf_requires_grad_error = str(error)
    else:
        raise AssertionError("changing requires_grad of a non-leaf should fail")
    try:
        torch.tensor([1, 2, 3], requires_grad=True, device=device)  # integers have no gradient
    except RuntimeError as error:
        integer_requires_grad_error = str(error)
    else:
        raise AssertionError("an integer tensor that requires grad should fail")
    try:
        w.add_(1)  # refused before it runs: recording it would give the leaf w a grad_fn
    except RuntimeError as error:
        inplace_error = str(error)
    else:
        raise AssertionError("an in-place change of a leaf that requires grad should fail")

    with torch.no_grad():  # what optimizer.step() does: change w outside the graph
        w -= 0.25 * w.grad
    w_after_step, w_version_after_step = w.tolist(), w._version

    d = w.detach()  # a new leaf that shares w's storage and its version counter
    detached_shares_storage = d.data_ptr() == w.data_ptr()
    d[0] = 100.0

    return LeafFacts(
        leaves={"w": w.is_leaf, "c": c.is_leaf, "n": n.is_leaf, "h": h.is_leaf, "k": k.is_leaf, "y": y.is_leaf},
        requires_grad={"w": w.requires_grad, "c": c.requires_grad, "n": n.requires_grad, "h": h.requires_grad},
        w_grad=w.grad.tolist(),
        h_grad_is_none=h_grad is None,
        h_grad_warning=h_grad_warning.split(" If you access")[0],
        k_grad=k.grad.tolist(),
        retains_grad={"k": k.retains_grad, "h": h.retains_grad, "w": w.retains_grad},
        hook_saw=hook_saw,
        hook_order=hook_order,
        post_accumulate_on_non_leaf_error=post_accumulate_on_non_leaf_error,
        retain_grad_error=retain_grad_error,
        nonleaf_requires_grad_error=nonleaf_requires_grad_error,
        integer_requires_grad_error=integer_requires_grad_error,
        inplace_error=inplace_error,
        w_after_no_grad_step=w_after_step,
        still_leaf_after_step=w.is_leaf and w.requires_grad,
        w_version_after_step=w_version_after_step,
        detached_is_leaf=d.is_leaf,
        detached_requires_grad=d.requires_grad,
        detached_shares_storage=detached_shares_storage,
        w_after_writing_detached=w.tolist(),
        w_version_after_writing_detached=w._version,
    )


def narrate(facts: LeafFacts) -> Iterator[str]:
    yield "w = [1, 2, 3] (requires_grad), c = ones(3), n = c * 2, h = w * 2, k = h + c, y = (k * k).sum()"
    yield f"Leaves (is_leaf): {facts.leaves}"
    yield f"requires_grad: {facts.requires_grad}  (h needs one because w does; n, made from c, does not)"
    yield f"A leaf that requires grad keeps its gradient: w.grad = {facts.w_grad}  (dy/dw = 2 * 2k)"
    yield f"A non-leaf does not: h.grad is None = {facts.h_grad_is_none}, with a UserWarning: {facts.h_grad_warning}"
    yield f"retain_grad() keeps it: k.grad = {facts.k_grad}  (dy/dk = 2k)"
    yield f"retains_grad: {facts.retains_grad}  (w.retain_grad() on a leaf changes nothing)"
    yield f"A hook on h saw {facts.hook_saw} while backward ran, without keeping it (h.grad is None, above)"
    yield f"Hooks in the order backward ran them: {facts.hook_order}"
    yield f"h.register_post_accumulate_grad_hook(...) fails: RuntimeError: {facts.post_accumulate_on_non_leaf_error}"
    yield f"c.retain_grad() fails: RuntimeError: {facts.retain_grad_error}"
    yield f"h.requires_grad_(False) fails: RuntimeError: {facts.nonleaf_requires_grad_error}"
    yield f"torch.tensor([1, 2, 3], requires_grad=True) fails: RuntimeError: {facts.integer_requires_grad_error}"
    yield f"w.add_(1) fails: RuntimeError: {facts.inplace_error}"
    yield (
        f"Under torch.no_grad(), w -= 0.25 * w.grad works: w = {facts.w_after_no_grad_step},"
        f" still a leaf that requires grad = {facts.still_leaf_after_step}, w._version = {facts.w_version_after_step}"
    )
    yield (
        f"d = w.detach(): is_leaf = {facts.detached_is_leaf}, requires_grad = {facts.detached_requires_grad},"
        f" shares w's storage = {facts.detached_shares_storage}"
    )
    yield (
        f"So d[0] = 100 changes w too: w = {facts.w_after_writing_detached},"
        f" and bumps the version counter they share: w._version = {facts.w_version_after_writing_detached}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_scenario("leaf_gradients", leaf_gradients, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
