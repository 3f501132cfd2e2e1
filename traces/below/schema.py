"""ATen's schema: the entries of ``native_functions.yaml``, and the kernel each names.

Reads ``aten/src/ATen/native/native_functions.yaml`` (the wheel ships it as
``torchgen/packaged/ATen/native/native_functions.yaml``) as torchgen's
``parse_native_yaml`` parses it: each ATen operator's schema, its structured
delegate (the ``out=`` variant whose kernel does the work) and the kernel it
names for each dispatch key, as plain entries the index keeps
(``function_entries``). ``find_kernel`` and ``kernel_symbol`` then say which
kernel serves a backend and which C++ function it compiles to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

NATIVE_FUNCTIONS_YAML = "aten/src/ATen/native/native_functions.yaml"
TAGS_YAML = "aten/src/ATen/native/tags.yaml"


def entry_lines(yaml_path: Path, key: str) -> dict[str, int]:
    """Line numbers of the yaml entries, by operator name: ``- name: mul.Tensor(...)`` -> {"mul.Tensor": n}."""
    pattern = re.compile(rf"^- {key}:\s*([\w.]+)\(")
    lines = {}
    with open(yaml_path, encoding="utf-8") as file:
        for number, text in enumerate(file, start=1):
            match = pattern.match(text)
            if match:
                lines.setdefault(match.group(1), number)
    return lines


def function_entries(parsed) -> dict[str, dict]:
    """Operator name ("add.Tensor") -> its native_functions.yaml entry and kernels per dispatch key."""
    functions = {}
    for function in parsed.native_functions:
        kernels = {}
        for key, backend_index in parsed.backend_indices.items():
            metadata = backend_index.get_kernel(function)
            if metadata is not None:
                kernels[str(key)] = [metadata.kernel, metadata.structured, metadata.cpp_namespace]
        functions[str(function.func.name)] = {
            "schema": str(function.func),
            "line": function.loc.line,
            "structured_delegate": str(function.structured_delegate) if function.structured_delegate else None,
            "kernels": kernels,
        }
    return functions


# Where a backend key's kernel comes from when the entry names none for it:
# the composite kernels, which serve every backend.
COMPOSITE_KEYS = ("CompositeExplicitAutogradNonFunctional", "CompositeExplicitAutograd", "CompositeImplicitAutograd")


def kernel_symbol(name: str, structured: bool, namespace: str) -> str:
    """The C++ function a kernel named in native_functions.yaml compiles to.

    A structured kernel is a class whose ``impl`` does the work
    (``TORCH_IMPL_FUNC(mul_out)`` defines ``structured_mul_out::impl``).
    """
    return f"{namespace}::structured_{name}::impl" if structured else f"{namespace}::{name}"


def find_kernel(functions: Mapping[str, dict], name: str, key: str) -> tuple[str, str, list] | None:
    """(entry, key, [kernel, structured, namespace]) for the kernel that serves ``key``."""
    entry = functions.get(name)
    if entry is None:
        return None
    candidates = [(name, key)]
    if entry["structured_delegate"]:
        candidates.append((entry["structured_delegate"], key))
    candidates += [(name, composite) for composite in COMPOSITE_KEYS]
    for entry_name, candidate_key in candidates:
        kernel = functions.get(entry_name, {}).get("kernels", {}).get(candidate_key)
        if kernel is not None:
            return entry_name, candidate_key, kernel
    return None
