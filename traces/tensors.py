"""Plain-data summaries of tensors, so a trace never holds on to a tensor."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch

# Tensors with at most this many elements keep their values in a trace;
# larger ones keep their shape, dtype and norm.
MAX_VALUES = 16


# Set while the tracer itself works on tensors (reading a gradient's values, say),
# so that the ops view does not record the tracer's operators as the scenario's.
_tracer_at_work: ContextVar[bool] = ContextVar("tracer_at_work", default=False)


class tracer_at_work:
    """A ``with`` block of the tracer's own work: the views do not record it.

    It also pauses the source view's trace function (one marked
    ``paused_while_tracer_works``; never a debugger's), which before Python 3.12
    would otherwise be called for every function the tracer calls.
    """

    __slots__ = ("_token", "_tracing")

    def __enter__(self) -> None:
        self._token = _tracer_at_work.set(True)
        self._tracing = sys.gettrace()
        if getattr(self._tracing, "paused_while_tracer_works", False):
            sys.settrace(None)
        else:
            self._tracing = None

    def __exit__(self, *error) -> None:
        if self._tracing is not None:
            sys.settrace(self._tracing)
        _tracer_at_work.reset(self._token)


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
    values: float | list | None = None  # the values, for small tensors; a complex number as [real, imaginary]
    norm: float | None = None  # the 2-norm, for large floating-point and complex tensors, and sparse ones
    layout: str | None = None  # "sparse_coo", "sparse_csr", ...; None for an ordinary (strided) tensor
    nnz: int | None = None  # a sparse tensor's number of stored entries
    quantized: str | None = None  # a quantized tensor's scheme and scale, e.g. "per_tensor_affine scale=0.1 zero_point=0"

    def __str__(self) -> str:
        if self.values is not None:
            text = _format_values(self.values, self.dtype.startswith("complex"))
        else:
            text = f"{self.dtype}{self.shape}"
            if self.layout is not None:
                text += f" {self.layout} nnz={self.nnz}"
            if self.norm is not None:
                text += f" norm={self.norm:.4g}"
        if self.quantized is not None:
            text += f" ({self.dtype} {self.quantized})" if self.values is not None else f" {self.quantized}"
        return text


PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)


def summarize(tensor: torch.Tensor) -> TensorSummary:
    """Describe a tensor in plain data: shape, dtype, and its values when it is small.

    Complex values are kept as ``[real, imaginary]`` pairs (JSON has no complex
    numbers); a sparse tensor keeps its layout, its number of stored entries and
    its norm; a quantized one its quantization, and its values dequantized.
    """
    with tracer_at_work():  # reading the values is the tracer's work, not the scenario's
        if type(tensor) in PLAIN_TENSORS:  # no subclass needs Python dispatch: skip any mode
            with torch._C._DisableTorchDispatch():
                return _summarize(tensor)
        return _summarize(tensor)


def dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _summarize(tensor: torch.Tensor) -> TensorSummary:
    dtype = dtype_name(tensor)
    shape = list(tensor.shape)
    if tensor.is_meta:
        return TensorSummary(shape, dtype)
    data = tensor.detach()
    if data.layout != torch.strided:
        return _sparse_summary(data, shape, dtype)
    quantized = None
    if data.is_quantized:
        quantized = _quantization(data)
        data = data.dequantize()
    if data.numel() <= MAX_VALUES:
        values = data.cpu().tolist()
        if data.is_complex():
            values = _complex_pairs(values)
        return TensorSummary(shape, dtype, values=values, quantized=quantized)
    if data.is_floating_point() or data.is_complex():
        return TensorSummary(shape, dtype, norm=torch.linalg.vector_norm(data).item(), quantized=quantized)
    return TensorSummary(shape, dtype, quantized=quantized)


def _sparse_summary(data: torch.Tensor, shape: list[int], dtype: str) -> TensorSummary:
    layout = str(data.layout).removeprefix("torch.")
    if data.layout == torch.sparse_coo:
        values = data.coalesce().values()  # an entry stored twice counts once, summed
    elif data.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
        values = data.values()
    else:
        return TensorSummary(shape, dtype, layout=layout)
    norm = torch.linalg.vector_norm(values).item() if values.is_floating_point() or values.is_complex() else None
    return TensorSummary(shape, dtype, norm=norm, layout=layout, nnz=values.shape[0])


def _quantization(data: torch.Tensor) -> str:
    scheme = str(data.qscheme()).removeprefix("torch.")
    if data.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return f"{scheme} scale={data.q_scale():.4g} zero_point={data.q_zero_point()}"
    return f"{scheme} axis={data.q_per_channel_axis()}"


def _complex_pairs(values):
    if isinstance(values, list):
        return [_complex_pairs(value) for value in values]
    return [values.real, values.imag]


def _format_values(values: float | list, complex_pairs: bool = False) -> str:
    if complex_pairs and isinstance(values, list) and values and not isinstance(values[0], list):
        real, imaginary = values
        return f"{real:.4g}{imaginary:+.4g}j"
    if isinstance(values, list):
        return "[" + ", ".join(_format_values(v, complex_pairs) for v in values) + "]"
    if isinstance(values, float):
        return f"{values:.4g}"
    return str(values)
