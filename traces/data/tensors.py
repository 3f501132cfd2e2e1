"""What the project says about a tensor: plain-data summaries, so that a trace never
holds on to a tensor, and ``describe``, the one line the debugger shows."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
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
    nnz: int | None = None  # a sparse tensor's number of stored entries (an index stored twice counts twice)
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
    with tracer_at_work(), no_python_dispatch(tensor):  # the tracer's work, not the scenario's
        return _summarize(tensor)


def no_python_dispatch(tensor: torch.Tensor):
    """For the tracer's own operators on a plain tensor: skip every Python dispatch mode (the ops
    view's too, which would only pass them on). A tensor subclass keeps its Python dispatch."""
    return torch._C._DisableTorchDispatch() if type(tensor) in PLAIN_TENSORS else nullcontext()


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
        stored = data._nnz()  # as torch keeps it: an index stored twice counts twice
        values = data.coalesce().values()  # for the norm: an index stored twice is one entry, summed
    elif data.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
        values = data.values()
        stored = values.shape[0]
    else:
        return TensorSummary(shape, dtype, layout=layout)
    norm = torch.linalg.vector_norm(values).item() if values.is_floating_point() or values.is_complex() else None
    return TensorSummary(shape, dtype, norm=norm, layout=layout, nnz=stored)


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


# One line for a tensor: what the debugger's Variables pane, hover and Watch show.
# It reads only metadata (shape, dtype, device, autograd state); values only for a
# plain CPU tensor of a handful of elements, so it never copies a large tensor or
# waits for an accelerator.

# Tensors with at most this many elements show their values in their line.
LINE_VALUES = 8


def shape_text(shape) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def describe(tensor: torch.Tensor) -> str:
    """One line: ``Tensor[64, 512] float32 cpu · grad_fn=AddmmBackward0``.

    Then, where they apply: ``leaf · requires_grad``, ``retains_grad``, the shape
    of ``.grad``, ``view of [3]`` (the base's shape), ``v1`` (in-place changes so
    far, ``_version``), ``storage freed (0 bytes)``. A plain CPU tensor of at most
    LINE_VALUES elements also shows its values: ``Tensor[3] float32 cpu = [1, 2, 3]``.
    Inside ``torch.vmap`` or ``torch.func.grad``, a functorch wrapper says what it wraps.
    """
    parts = [tensor_header(tensor)]
    wrapped = functorch_wrapping(tensor)
    if wrapped is not None:
        parts.append(wrapped)
    if tensor.grad_fn is not None:
        parts.append(f"grad_fn={type(tensor.grad_fn).__name__}")
    elif tensor.requires_grad:
        parts.append("leaf · requires_grad")
    if tensor.retains_grad:
        parts.append("retains_grad")
    grad = readable_grad(tensor)
    if grad is not None:
        parts.append(f"grad {shape_text(grad.shape)}")
    if tensor._is_view():
        parts.append(f"view of {shape_text(tensor._base.shape)}")
    version = version_of(tensor)
    if version:
        parts.append(f"v{version}")
    freed = storage_missing(tensor)
    if freed is not None:
        parts.append(freed)
    return " · ".join(parts)


def tensor_header(tensor: torch.Tensor) -> str:
    """The start of ``describe``'s line: type, shape, dtype, device (layout, values where shown)."""
    line = f"{type_name(tensor)}{shape_text(tensor.shape)} {dtype_name(tensor)} {tensor.device}"
    if tensor.layout != torch.strided:
        line += f" {str(tensor.layout).removeprefix('torch.')}"
    values = small_values(tensor)
    if values is not None:
        line += f" = {_format_values(values)}"
    return line


def type_name(tensor: torch.Tensor) -> str:
    """The tensor's class; inside a torch.func transform, the functorch wrapper it really is
    (torch says ``Tensor`` for both)."""
    functorch = torch._C._functorch
    if functorch.is_batchedtensor(tensor):
        return "BatchedTensor"
    if functorch.is_gradtrackingtensor(tensor):
        return "GradTrackingTensor"
    if functorch.is_functionaltensor(tensor) or torch._is_functional_tensor(tensor):
        return "FunctionalTensor"
    return type(tensor).__name__


def functorch_wrapping(tensor: torch.Tensor) -> str | None:
    """What a functorch wrapper wraps: ``batch dim 1 of Tensor[3, 5] · level 1`` (vmap's
    BatchedTensor), ``level 2 over Tensor[3]`` (torch.func.grad's GradTrackingTensor); None
    for any other tensor. The wrapped tensor is read through torch's functorch API, never its data."""
    functorch = torch._C._functorch
    if not functorch.is_functorch_wrapped_tensor(tensor):
        return None
    inner = functorch.get_unwrapped(tensor)
    inner_text = f"{type_name(inner)}{shape_text(inner.shape)}"
    level = functorch.maybe_get_level(tensor)
    if functorch.is_batchedtensor(tensor):
        return f"batch dim {functorch.maybe_get_bdim(tensor)} of {inner_text} · level {level}"
    return f"level {level} over {inner_text}"


def bytes_needed(tensor: torch.Tensor) -> int:
    """How many bytes of its storage a strided tensor reaches, from the storage's start."""
    if tensor.numel() == 0:
        return 0
    last = tensor.storage_offset() + sum((size - 1) * step for size, step in zip(tensor.shape, tensor.stride()))
    return (last + 1) * tensor.element_size()


def storage_missing(tensor: torch.Tensor) -> str | None:
    """``storage freed (0 bytes)`` where a tensor's storage no longer holds its elements;
    None where it does, or where the tensor has no storage of its own to ask.

    FSDP frees a parameter's memory with ``untyped_storage().resize_(0)`` and keeps
    the tensor: its shape stays, its data is gone, and reading it (torch's own repr
    does) crashes the process. Only sizes are read here: storage's and the tensor's.
    """
    if tensor.layout != torch.strided or tensor.is_nested or torch._C._functorch.is_functorch_wrapped_tensor(tensor):
        return None
    try:
        has = tensor.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError, TypeError):
        return None  # a wrapper subclass without storage
    needs = bytes_needed(tensor)
    if has >= needs:
        return None
    return "storage freed (0 bytes)" if has == 0 else f"storage too small ({has} of {needs} bytes)"


def format_values(values: float | list) -> str:
    """Values as ``describe`` shows them: 4 significant digits, nested lists as brackets."""
    return _format_values(values)


def readable_grad(tensor: torch.Tensor) -> torch.Tensor | None:
    """``tensor.grad`` where torch keeps one (a leaf, or retain_grad()); None elsewhere.

    Reading ``.grad`` of any other non-leaf makes torch print a warning into the
    program's output, so it is not read.
    """
    if tensor.is_leaf or tensor.retains_grad:
        return tensor.grad
    return None


def version_of(tensor: torch.Tensor) -> int | None:
    """How often the tensor was changed in place (``_version``); None for inference tensors."""
    return None if tensor.is_inference() else tensor._version


def has_own_values(tensor: torch.Tensor) -> bool:
    """Whether the values can be read from the CPU's memory without computing or copying anything.

    Not for a tensor whose class handles its own operators (``__torch_dispatch__``:
    FakeTensor, FunctionalTensor, DTensor, ...), a functorch or functional wrapper, a
    nested, sparse, quantized, meta or device tensor, nor one whose storage was freed.
    A plain subclass (``as_subclass``) is plain memory: read with its Python hooks off.
    """
    return (
        type(tensor).__torch_dispatch__ is torch._C._disabled_torch_dispatch_impl
        and tensor.layout == torch.strided
        and tensor.device.type == "cpu"
        and not tensor.is_nested
        and not tensor.is_quantized
        and not torch._C._functorch.is_functorch_wrapped_tensor(tensor)
        and not torch._is_functional_tensor(tensor)
        and storage_missing(tensor) is None
    )


def small_values(tensor: torch.Tensor) -> float | list | None:
    """The values of a plain CPU tensor of at most LINE_VALUES elements; None for any other."""
    if tensor.numel() > LINE_VALUES or not has_own_values(tensor):
        return None
    with reading_values():
        return tensor.tolist()


def first_values(tensor: torch.Tensor, count: int) -> list | None:
    """Up to ``count`` values from the start of the last dimension (``t[0, ..., 0, :count]``).

    Read through a view, so nothing else is copied; None where ``has_own_values`` is False.
    """
    if not has_own_values(tensor):
        return None
    with reading_values():
        row = tensor.detach()
        while row.dim() > 1:
            row = row[0]
        return row[:count].tolist() if row.dim() == 1 else [row.item()]


@contextmanager
def reading_values() -> Iterator[None]:
    """Read a tensor's values as nobody's operators: no dispatch mode and no subclass's
    ``__torch_function__`` sees them, and a trace does not record them as the program's."""
    with tracer_at_work(), torch._C._DisableTorchDispatch(), torch._C.DisableTorchFunctionSubclass():
        yield
