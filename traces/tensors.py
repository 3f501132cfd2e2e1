"""Plain-data summaries of tensors, so a trace never holds on to a tensor."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Tensors with at most this many elements keep their values in a trace;
# larger ones keep their shape, dtype and norm.
MAX_VALUES = 16


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
    dtype = str(tensor.dtype).removeprefix("torch.")
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
