"""Plain-data summaries of tensors, so a trace never holds on to a tensor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch

# Tensors with at most this many elements keep their values in a trace;
# larger ones keep their shape, dtype and norm.
MAX_VALUES = 16


# Set while the tracer itself works on tensors (reading a gradient's values, say),
# so that the ops view does not record the tracer's operators as the scenario's.
_tracer_at_work: ContextVar[bool] = ContextVar("tracer_at_work", default=False)


@contextmanager
def tracer_at_work() -> Iterator[None]:
    token = _tracer_at_work.set(True)
    try:
        yield
    finally:
        _tracer_at_work.reset(token)


def is_tracer_at_work() -> bool:
    return _tracer_at_work.get()


def iter_tensors(value) -> Iterator[torch.Tensor]:
    """The tensors in a value: a tensor, or tuples, lists and dicts of them.

    (A plain walk rather than torch's pytree, so that the source view does not
    list torch functions that only the tracer called.)
    """
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from iter_tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_tensors(item)


@dataclass
class TensorSummary:
    shape: list[int]
    dtype: str
    values: float | list | None = None  # the values, for small tensors
    norm: float | None = None  # the 2-norm, for large floating tensors

    def __str__(self) -> str:
        if self.values is not None:
            return _format_values(self.values)
        text = f"{self.dtype}{self.shape}"
        if self.norm is not None:
            text += f" norm={self.norm:.4g}"
        return text


def summarize(tensor: torch.Tensor) -> TensorSummary:
    """Describe a tensor in plain data: shape, dtype, and its values when it is small."""
    with tracer_at_work():  # reading the values is the tracer's work, not the scenario's
        return _summarize(tensor)


def dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _summarize(tensor: torch.Tensor) -> TensorSummary:
    dtype = dtype_name(tensor)
    shape = list(tensor.shape)
    if tensor.layout != torch.strided or tensor.is_meta:
        return TensorSummary(shape, dtype)
    data = tensor.detach()
    if data.numel() <= MAX_VALUES:
        return TensorSummary(shape, dtype, values=data.cpu().tolist())
    if data.is_floating_point():
        return TensorSummary(shape, dtype, norm=data.float().norm().item())
    return TensorSummary(shape, dtype)


def _format_values(values: float | list) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_format_values(v) for v in values) + "]"
    if isinstance(values, float):
        return f"{values:.4g}"
    return str(values)
