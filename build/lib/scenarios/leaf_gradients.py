"""Leaf tensors: which tensors keep a .grad, and why an optimizer updates under no_grad.

A tensor is a leaf when no differentiable operation made it: tensors you create
(requires_grad or not) and the result of detach(). Backward stores gradients only
in leaves that require grad; a non-leaf's .grad stays None (reading it warns and
names retain_grad()), unless retain_grad() asks to keep it. A tensor hook sees
the gradient without keeping it. Changing a leaf that requires grad in place is
refused, except under torch.no_grad(), which is how optimizer.step() works.

In the debugger: put a breakpoint on `y.backward()`, step in (F11) to
torch/_tensor.py `Tensor.backward`; then put one in the `remember` hook below
and look at the call stack: the engine calls it from inside backward.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer

INPLACE_LEAF_ERROR = "a leaf Variable that requires grad is being used in an in-place operation"
NONLEAF_GRAD_WARNING = "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed"


@dataclass
class LeafFacts:
    leaves: dict[str, bool]  # is_leaf of each tensor
    requires_grad: dict[str, bool]
    w_grad: list[float]  # a leaf that requires grad gets its gradient
    h_grad_is_none: bool  # a non-leaf does not
    h_grad_warning: str  # ...and reading its .grad says so
    k_grad: list[float]  # retain_grad() kept this non-leaf's gradient
    hook_saw: list[float]  # a hook on h saw its gradient while backward ran, kept nothing
    inplace_error: str  # w.add_(1) on a leaf that requires grad
    w_after_no_grad_step: list[float]  # w -= 0.25 * w.grad under torch.no_grad()
    still_leaf_after_step: bool
    detached_is_leaf: bool
    detached_requires_grad: bool
    detached_shares_storage: bool  # same data_ptr as w
    w_after_writing_detached: list[float]  # writing d[0] changed w[0]


def leaf_gradients(device: str = "cpu", tracer: Tracer = NO_TRACE) -> LeafFacts:
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)  # a leaf you made
    c = torch.ones(3, device=device)  # also a leaf, but it needs no gradient
    h = w * 2  # made by an operation on w: not a leaf
    k = h + c
    k.retain_grad()  # ask backward to keep k's gradient

    hook_saw = []

    def remember(gradient):
        hook_saw.extend(gradient.tolist())  # returning None leaves the gradient unchanged

    h.register_hook(remember)
    y = (k * k).sum()
    with tracer.backward_of({"y": y}, names={"w": w, "c": c, "h": h, "k": k}):
        y.backward()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h_grad = h.grad  # None, and a UserWarning that names retain_grad()
    h_grad_warning = next(str(warning.message) for warning in caught if warning.category is UserWarning)

    try:
        w.add_(1)  # autograd refuses: w's old value may be needed by backward
    except RuntimeError as error:
        inplace_error = str(error)
    else:
        raise AssertionError("an in-place change of a leaf that requires grad should fail")

    with torch.no_grad():  # what optimizer.step() does: change w outside the graph
        w -= 0.25 * w.grad
    w_after_step = w.tolist()

    d = w.detach()  # a new leaf that shares w's storage
    detached_shares_storage = d.data_ptr() == w.data_ptr()
    d[0] = 100.0

    return LeafFacts(
        leaves={"w": w.is_leaf, "c": c.is_leaf, "h": h.is_leaf, "k": k.is_leaf, "y": y.is_leaf},
        requires_grad={"w": w.requires_grad, "c": c.requires_grad, "h": h.requires_grad},
        w_grad=w.grad.tolist(),
        h_grad_is_none=h_grad is None,
        h_grad_warning=h_grad_warning.split(" If you access")[0],
        k_grad=k.grad.tolist(),
        hook_saw=hook_saw,
        inplace_error=inplace_error,
        w_after_no_grad_step=w_after_step,
        still_leaf_after_step=w.is_leaf and w.requires_grad,
        detached_is_leaf=d.is_leaf,
        detached_requires_grad=d.requires_grad,
        detached_shares_storage=detached_shares_storage,
        w_after_writing_detached=w.tolist(),
    )


def narrate(facts: LeafFacts) -> Iterator[str]:
    yield "w = [1, 2, 3] (requires_grad), c = ones(3), h = w * 2, k = h + c, y = (k * k).sum()"
    yield f"Leaves (is_leaf): {facts.leaves}"
    yield f"requires_grad: {facts.requires_grad}  (h needs one because w does)"
    yield f"A leaf that requires grad keeps its gradient: w.grad = {facts.w_grad}  (dy/dw = 2 * 2k)"
    yield f"A non-leaf does not: h.grad is None = {facts.h_grad_is_none}, with a UserWarning: {facts.h_grad_warning}"
    yield f"retain_grad() keeps it: k.grad = {facts.k_grad}  (dy/dk = 2k)"
    yield f"A hook on h saw {facts.hook_saw} while backward ran, without keeping it (h.grad is None, above)"
    yield f"w.add_(1) fails: RuntimeError: {facts.inplace_error}"
    yield f"Under torch.no_grad(), w -= 0.25 * w.grad works: w = {facts.w_after_no_grad_step}, still a leaf that requires grad = {facts.still_leaf_after_step}"
    yield f"d = w.detach(): is_leaf = {facts.detached_is_leaf}, requires_grad = {facts.detached_requires_grad}, shares w's storage = {facts.detached_shares_storage}"
    yield f"So d[0] = 100 changes w too: w = {facts.w_after_writing_detached}"


def main(argv: list[str] | None = None) -> int:
    return run_scenario("leaf_gradients", leaf_gradients, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
