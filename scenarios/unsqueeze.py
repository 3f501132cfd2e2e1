"""unsqueeze versus unsqueeze_: a new view, or the same tensor changed in place.

x.unsqueeze(0) returns a new tensor object with a size-1 dimension added, and x
keeps its shape. But the new tensor is a view: it shares x's storage (its _base
is x, its data_ptr is x's), so writing through it changes x. x.unsqueeze_(0)
changes x's own shape, returns x itself, and bumps x's version counter, which
autograd uses to notice in-place changes. x[None] is the same as x.unsqueeze(0).

In the debugger: `x.unsqueeze(0)` is a C++ function with no Python source: F11
on it just moves to the next line. Its launch configuration adds --trace, whose
dispatch mode sends every ATen op through Python (torch/_library/simple_registry.py
`find_torch_dispatch_rule`, then the trace's own code); on Python up to 3.11 the
project's debugger extension steps past that machinery, so F11 moves to the next
line there too, but on Python 3.12 and newer (debugpy steps with sys.monitoring)
it skips only traces/, and F11 can stop in simple_registry.py.
Watch `u._base` and `z._version` in the Variables pane instead, step into `y.backward()` (torch/_tensor.py `Tensor.backward`), and read
the trace for the nodes UnsqueezeBackward0 (out of place) and UnsqueezeBackward1
(in place) and the ATen ops aten::unsqueeze and aten::unsqueeze_.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer


@dataclass
class UnsqueezeFacts:
    x_shape: list[int]  # unchanged by unsqueeze
    u_shape: list[int]
    u_is_new_object: bool
    u_base_is_x: bool  # u is a view of x
    shares_data_ptr: bool
    x_after_writing_u: list[float]  # u[0, 0] = 10 wrote into x
    inplace_returns_same_object: bool
    inplace_shape: list[int]
    version_before: int
    version_after: int
    valid_dims: list[int]  # for a 1-d tensor: -2, -1, 0, 1
    shapes_by_dim: dict[int, list[int]]
    out_of_range_error: str  # IndexError for dim 2
    none_index_equals_unsqueeze: bool  # x[None] == x.unsqueeze(0)
    grad_fn_out_of_place: str
    grad_fn_in_place: str
    inplace_on_leaf_error: str
    w_grad: list[float]  # y = w.unsqueeze(0).sum() + (w * 2).unsqueeze_(1).sum()


def unsqueeze_lesson(device: str = "cpu", tracer: Tracer = NO_TRACE) -> UnsqueezeFacts:
    x = torch.tensor([1.0, 2.0, 3.0], device=device)
    u = x.unsqueeze(0)  # a new tensor object, shape [1, 3] ...
    u_base_is_x = u._base is x  # ... that is a view of x
    shares_data_ptr = u.data_ptr() == x.data_ptr()
    u[0, 0] = 10.0  # so this writes into x

    z = torch.tensor([1.0, 2.0, 3.0], device=device)
    version_before = z._version
    same = z.unsqueeze_(0)  # z itself becomes [1, 3]
    version_after = z._version

    # A 1-d tensor can get a new dimension at 0 or 1, or counting from the end, -1 or -2.
    t = torch.tensor([1.0, 2.0, 3.0], device=device)
    valid_dims = list(range(-t.dim() - 1, t.dim() + 1))
    shapes_by_dim = {dim: list(t.unsqueeze(dim).shape) for dim in valid_dims}
    try:
        t.unsqueeze(2)
    except IndexError as error:
        out_of_range_error = str(error)
    else:
        raise AssertionError("unsqueeze(2) of a 1-d tensor should fail")

    # Under autograd: both record a node; in place on a leaf is refused.
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    w_row = w.unsqueeze(0)  # UnsqueezeBackward0
    w_column = (w * 2).unsqueeze_(1)  # in place on a non-leaf is fine: UnsqueezeBackward1
    try:
        w.unsqueeze_(0)
    except RuntimeError as error:
        inplace_on_leaf_error = str(error)
    else:
        raise AssertionError("unsqueeze_ on a leaf that requires grad should fail")
    y = w_row.sum() + w_column.sum()
    with tracer.backward_of({"y": y}, names={"w": w, "w_row": w_row, "w_column": w_column}):
        y.backward()

    return UnsqueezeFacts(
        x_shape=list(x.shape),
        u_shape=list(u.shape),
        u_is_new_object=u is not x,
        u_base_is_x=u_base_is_x,
        shares_data_ptr=shares_data_ptr,
        x_after_writing_u=x.tolist(),
        inplace_returns_same_object=same is z,
        inplace_shape=list(z.shape),
        version_before=version_before,
        version_after=version_after,
        valid_dims=valid_dims,
        shapes_by_dim=shapes_by_dim,
        out_of_range_error=out_of_range_error,
        none_index_equals_unsqueeze=torch.equal(t[None], t.unsqueeze(0)) and t[None].shape == t.unsqueeze(0).shape,
        grad_fn_out_of_place=type(w_row.grad_fn).__name__,
        grad_fn_in_place=type(w_column.grad_fn).__name__,
        inplace_on_leaf_error=inplace_on_leaf_error,
        w_grad=w.grad.tolist(),
    )


def narrate(facts: UnsqueezeFacts) -> Iterator[str]:
    yield "x = [1, 2, 3]; u = x.unsqueeze(0)"
    yield f"u is a new object = {facts.u_is_new_object}: u.shape = {facts.u_shape}, x.shape stays {facts.x_shape}"
    yield f"...but a view of x: u._base is x = {facts.u_base_is_x}, same data_ptr = {facts.shares_data_ptr}"
    yield f"So u[0, 0] = 10 writes into x: x = {facts.x_after_writing_u}"
    yield f"z.unsqueeze_(0) returns z itself = {facts.inplace_returns_same_object}, z.shape = {facts.inplace_shape}"
    yield f"...and bumps z._version: {facts.version_before} -> {facts.version_after}"
    yield f"A 1-d tensor takes dims {facts.valid_dims}: shapes {facts.shapes_by_dim}"
    yield f"unsqueeze(2) fails: IndexError: {facts.out_of_range_error}"
    yield f"x[None] equals x.unsqueeze(0) (values and shape) = {facts.none_index_equals_unsqueeze}"
    yield f"grad_fn of w.unsqueeze(0): {facts.grad_fn_out_of_place}; of (w * 2).unsqueeze_(1): {facts.grad_fn_in_place}"
    yield f"w.unsqueeze_(0) on a leaf that requires grad fails: RuntimeError: {facts.inplace_on_leaf_error}"
    yield f"y = w.unsqueeze(0).sum() + (w * 2).unsqueeze_(1).sum() gives w.grad = {facts.w_grad}  (1 + 2)"


def main(argv: list[str] | None = None) -> int:
    return run_scenario("unsqueeze", unsqueeze_lesson, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
