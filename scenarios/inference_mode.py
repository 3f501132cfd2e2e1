"""torch.inference_mode against torch.no_grad: faster tensors that autograd can never use.

Both stop autograd from recording: inside either, w * 2 has no grad_fn and does
not require grad. A tensor made under no_grad is an ordinary tensor: it has a
version counter and backward can save it later. A tensor made under
inference_mode is an *inference tensor* (torch.is_inference is True): it skips
the version counter (reading `_version` raises), so autograd could never tell
whether it changed, and autograd refuses to save it for backward; outside
inference mode an in-place change of it is refused too (yet, on torch 2.14.1, the
refused add_ has already written when it raises). That bookkeeping saved is
why inference_mode is the faster choice for code that will never need a
gradient. The way out, when it does: clone() outside inference mode gives an
ordinary tensor with the same values.

In the debugger: put a breakpoint in torch/autograd/grad_mode.py
`inference_mode.__enter__`, which the `with torch.inference_mode():` line runs
(F11 on that line goes through `inference_mode.__new__` and `__init__` first); in
the lesson, watch `torch.is_inference_mode_enabled()` in the Watch pane turn True
inside the block and False after it. Expand `made` in the Variables pane: its
`version` reads `none: an inference tensor`, where `cloned`'s reads 1 (a clone
of an inference tensor has a version counter again).
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scenarios._runner import run_scenario
from traces import NO_TRACE, Tracer

NO_VERSION_ERROR = "Inference tensors do not track version counter."
SAVE_ERROR = "Inference tensors cannot be saved for backward."
INPLACE_OUTSIDE_ERROR = "Inplace update to inference tensor outside InferenceMode is not allowed."


@dataclass
class InferenceFacts:
    inside: dict[str, dict[str, bool]]  # per mode: grad enabled, inference mode enabled, inside the block
    result_inside: dict[str, dict[str, object]]  # per mode: w * 2 made inside: grad_fn, requires_grad, is_inference
    no_grad_version: int  # a no_grad tensor has a version counter
    no_version_error: str  # an inference tensor's _version
    no_grad_saved_grad: list[float]  # (w * made_under_no_grad).sum().backward(): saved, fine
    save_error: str  # w * made_under_inference_mode: refused
    inplace_outside_error: str  # made_under_inference_mode.add_(1) after the block
    made_after_refused_add: list[float]  # ...which wrote all the same: [2, 2]
    cloned_is_inference: bool
    cloned_version: int
    cloned_grad: list[float]  # (w * made.clone()).sum().backward()


def first_sentence(error: RuntimeError) -> str:
    """torch's message up to its advice."""
    text = str(error)
    return text[: text.index(".") + 1]


def inference_mode(device: str = "cpu", tracer: Tracer = NO_TRACE) -> InferenceFacts:
    w = torch.tensor([1.0, 2.0], requires_grad=True, device=device)
    inside, result_inside = {}, {}
    with torch.no_grad():
        plain = torch.ones(2, device=device)  # an ordinary tensor
        doubled = w * 2
        inside["no_grad"] = {"grad": torch.is_grad_enabled(), "inference_mode": torch.is_inference_mode_enabled()}
    result_inside["no_grad"] = {
        "grad_fn": doubled.grad_fn, "requires_grad": doubled.requires_grad, "is_inference": torch.is_inference(doubled)
    }  # fmt: skip
    with torch.inference_mode():
        made = torch.ones(2, device=device)  # an inference tensor
        doubled = w * 2
        inside["inference_mode"] = {"grad": torch.is_grad_enabled(), "inference_mode": torch.is_inference_mode_enabled()}
    result_inside["inference_mode"] = {
        "grad_fn": doubled.grad_fn, "requires_grad": doubled.requires_grad, "is_inference": torch.is_inference(doubled)
    }  # fmt: skip

    no_grad_version = plain._version
    try:
        made._version
    except RuntimeError as error:
        no_version_error = str(error)
    else:
        raise AssertionError("an inference tensor should have no version counter")

    (w * plain).sum().backward()  # MulBackward0 saves plain: fine
    no_grad_saved_grad = w.grad.tolist()
    w.grad = None
    try:
        w * made  # MulBackward0 would save made: refused at once
    except RuntimeError as error:
        save_error = str(error)
    else:
        raise AssertionError("saving an inference tensor for backward should fail")
    cloned = made.clone()  # outside inference mode: an ordinary tensor, same values
    try:
        made.add_(1)
    except RuntimeError as error:
        inplace_outside_error = first_sentence(error)
    else:
        raise AssertionError("an in-place change of an inference tensor outside inference mode should fail")
    made_after_refused_add = made.tolist()  # the check comes after the kernel wrote

    y = (w * cloned).sum()
    with tracer.backward_of({"y": y}, names={"w": w, "cloned": cloned}):
        y.backward()

    return InferenceFacts(
        inside=inside,
        result_inside=result_inside,
        no_grad_version=no_grad_version,
        no_version_error=no_version_error,
        no_grad_saved_grad=no_grad_saved_grad,
        save_error=save_error,
        inplace_outside_error=inplace_outside_error,
        made_after_refused_add=made_after_refused_add,
        cloned_is_inference=torch.is_inference(cloned),
        cloned_version=cloned._version,
        cloned_grad=w.grad.tolist(),
    )


def narrate(facts: InferenceFacts) -> Iterator[str]:
    yield "w = [1, 2] (requires_grad); plain = torch.ones(2) under torch.no_grad(), made = torch.ones(2) under torch.inference_mode()"
    yield f"Inside each block (grad enabled, inference mode enabled): {facts.inside}"
    yield f"w * 2 made inside each: {facts.result_inside}"
    yield f"plain._version = {facts.no_grad_version}; made._version raises RuntimeError: {facts.no_version_error}"
    yield f"(w * plain).sum().backward() saves plain and works: w.grad = {facts.no_grad_saved_grad}"
    yield f"w * made would save made: RuntimeError: {facts.save_error}"
    yield (
        f"made.add_(1) after the block: RuntimeError: {facts.inplace_outside_error}"
        f" Yet it wrote: made = {facts.made_after_refused_add}"
    )
    yield (
        f"cloned = made.clone(), taken outside the block before that: is_inference = {facts.cloned_is_inference},"
        f" _version = {facts.cloned_version} (a counter again); (w * cloned).sum().backward() gives w.grad = {facts.cloned_grad}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_scenario("inference_mode", inference_mode, narrate, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
