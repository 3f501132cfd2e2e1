"""Below Python: what torch says about itself under the Python surface, read offline.

Everything here comes from the installed wheel; nothing is fetched.

- **Derivative formulas.** Each autograd node (``MulBackward0``) is generated
  from an entry of ``tools/autograd/derivatives.yaml``, which the wheel ships as
  ``torchgen/packaged/autograd/derivatives.yaml``; torchgen's own loader turns
  it into the node names and, per input, the formula that computes its gradient.
- **Native functions.** ``aten/src/ATen/native/native_functions.yaml`` (shipped
  beside it) gives each ATen operator's schema, its structured delegate and the
  kernel it names for each backend.
- **The dispatcher.** The live dispatcher says which kernel is registered for
  each dispatch key, and in which C++ file (``torch._C._dispatch_dump_table``).
- **C++ frames.** The wheel's libraries keep their symbols, so a stack captured
  while an operator is dispatched names the C++ functions it went through
  (``CapturedTraceback.extract(cpp=True)``).
- **Links.** ``torch.version.git_version`` names the commit torch was built
  from, so every file of PyTorch's repository gets a plain GitHub URL at that
  commit. Files generated at build time (``RegisterCPU_0.cpp``,
  ``VariableType_2.cpp``) are not in the repository: they are named as such,
  with the template in the repository that generates them.

Loading derivatives.yaml through torchgen takes a few seconds, so the index
(formulas, native functions, the C++ nodes' headers) is built once per torch
version and kept as JSON in a per-user cache folder. A cache that cannot be
read or written never fails a run: the index is then built in memory.

The cache is read as untrusted input (``read_cache``): only a regular file
(not a link, not a FIFO) of at most ``CACHE_LIMIT`` bytes, owned by this user
in a folder of this user's that no one else can write to (the folder may come
from a shared ``XDG_CACHE_HOME``), whose first line is the sha256 of the rest,
and whose every entry has the layout ``build_index`` writes, for this torch.
Anything else is rebuilt (in memory only where the folder is not this user's
alone), so a damaged cache never hangs, crashes or changes a trace.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# Bump when the cached index's layout changes: old cache files are then ignored.
INDEX_FORMAT = 3  # 3: a first line with the sha256 of the JSON after it
CACHE_LIMIT = 64 * 1024 * 1024  # bytes; the index of torch 2.x is about 1.2 MB

REPOSITORY = "https://github.com/pytorch/pytorch"
DERIVATIVES_YAML = "tools/autograd/derivatives.yaml"
NATIVE_FUNCTIONS_YAML = "aten/src/ATen/native/native_functions.yaml"
TAGS_YAML = "aten/src/ATen/native/tags.yaml"

TORCH_DIR = Path(torch.__file__).resolve().parent
SITE_PACKAGES = TORCH_DIR.parent

# Where the wheel keeps its copies of files from PyTorch's repository: setup.py
# mirrors the yaml files and templates into torchgen/packaged, and the C++
# headers are installed under torch/include.
WHEEL_COPIES = {
    "tools/autograd/": "torchgen/packaged/autograd/",
    "aten/src/ATen/native/native_functions.yaml": "torchgen/packaged/ATen/native/native_functions.yaml",
    "aten/src/ATen/native/tags.yaml": "torchgen/packaged/ATen/native/tags.yaml",
    "aten/src/ATen/templates/": "torchgen/packaged/ATen/templates/",
    "torch/csrc/": "torch/include/torch/csrc/",
    "torch/": "torch/",  # torch's Python files
}

# The top-level folders of PyTorch's repository, to find a repository path inside
# the absolute path of the machine that built the wheel ("/__w/pytorch/pytorch/aten/...").
REPOSITORY_FOLDERS = ("aten", "build", "c10", "caffe2", "functorch", "third_party", "tools", "torch", "torchgen")


# ---------------------------------------------------------------------------
# Links to PyTorch's source at the commit torch was built from
# ---------------------------------------------------------------------------


def torch_commit() -> str:
    """The git revision to link to: torch's commit, or its release tag when the build does not say."""
    commit = getattr(torch.version, "git_version", None) or ""
    if re.fullmatch(r"[0-9a-f]{40}", commit):
        return commit
    return "v" + torch.__version__.split("+")[0]


def github_url(path: str, line: int | None = None) -> str:
    url = f"{REPOSITORY}/blob/{torch_commit()}/{path}"
    return f"{url}#L{line}" if line else url


@dataclass
class SourceLink:
    """A place in PyTorch's source.

    ``kind`` is ``"repository"`` for a file of PyTorch's repository (``url`` is
    its GitHub URL at torch's commit), ``"generated"`` for a file written while
    torch was built (no URL: it is not in the repository; ``template`` is the
    repository file it is generated from, where known), and ``"elsewhere"`` for a
    file outside PyTorch (an extension or your own code).
    """

    path: str  # in the repository ("aten/src/ATen/core/PythonFallbackKernel.cpp"), or as given
    line: int | None
    kind: str  # "repository", "generated" or "elsewhere"
    url: str | None = None
    template: str | None = None  # for a generated file: the template in the repository
    template_url: str | None = None

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def wheel_copy(self) -> Path | None:
        """The installed copy of this file, where the wheel has one (to open it locally)."""
        if self.kind != "repository":
            return None
        for prefix, copy in WHEEL_COPIES.items():
            if self.path == prefix or (prefix.endswith("/") and self.path.startswith(prefix)):
                local = SITE_PACKAGES / (copy + self.path[len(prefix) :] if prefix.endswith("/") else copy)
                return local if local.is_file() else None
        return None


def repository_link(path: str, line: int | None = None) -> SourceLink:
    return SourceLink(path, line, "repository", github_url(path, line))


def link_for_build_path(build_path: str, line: int | None = None) -> SourceLink:
    """Link a path as the dispatcher reports it (an absolute path on the build machine)."""
    kind, path = in_repository(build_path)
    if kind == "generated":
        return generated_link(path, line)
    if kind == "repository":
        return repository_link(path, line)
    return SourceLink(build_path, line, "elsewhere")


@functools.lru_cache(maxsize=1024)  # a trace links the same few files many times
def in_repository(build_path: str) -> tuple[str, str]:
    """``(kind, path in the repository)`` of a build machine's path: "repository", "generated" or "elsewhere"."""
    parts = Path(build_path).parts
    for index, part in enumerate(parts):
        if part in REPOSITORY_FOLDERS and index + 1 < len(parts):
            path = "/".join(parts[index:])
            if part == "build" or "generated" in parts[index:]:
                return "generated", path
            if part == "torch" and parts[index + 1] in ("lib", "include"):
                continue  # an installed wheel's folder, not the repository's torch/
            return "repository", path
    return "elsewhere", build_path


# The templates that generate the files torch writes at build time, by file name.
# (torchgen's dest/ and tools/autograd/ write them; their names carry a shard number.)
TEMPLATES = {
    "Register": "aten/src/ATen/templates/RegisterDispatchKey.cpp",
    "RegisterFunctionalization": "aten/src/ATen/templates/RegisterFunctionalization.cpp",
    "RegisterBackendSelect": "aten/src/ATen/templates/RegisterBackendSelect.cpp",
    "RegisterSchema": "aten/src/ATen/templates/RegisterSchema.cpp",
    "UfuncCPU": "aten/src/ATen/templates/UfuncCPU.cpp",
    "UfuncCPUKernel": "aten/src/ATen/templates/UfuncCPUKernel.cpp",
    "VariableType": "tools/autograd/templates/VariableType.cpp",
    "TraceType": "tools/autograd/templates/TraceType.cpp",
    "ADInplaceOrViewType": "tools/autograd/templates/ADInplaceOrViewType.cpp",
    "Functions": "tools/autograd/templates/Functions.cpp",
    "python_variable_methods": "tools/autograd/templates/python_variable_methods.cpp",
    "python_torch_functions": "tools/autograd/templates/python_torch_functions.cpp",
    "python_nn_functions": "tools/autograd/templates/python_nn_functions.cpp",
    "python_functions": "tools/autograd/templates/python_functions.cpp",
}


def template_of(generated_path: str) -> str | None:
    """The repository template a generated file comes from, e.g. RegisterCPU_0.cpp -> RegisterDispatchKey.cpp."""
    stem = Path(generated_path).stem
    stem = re.sub(r"_\d+$", "", stem)  # the shard: VariableType_2 -> VariableType
    for candidate in (stem, re.sub(r"_[a-z0-9_]+$", "", stem)):  # UfuncCPU_add -> UfuncCPU
        if candidate in TEMPLATES:
            return TEMPLATES[candidate]
    if stem.startswith("Register"):  # RegisterCPU, RegisterCompositeExplicitAutograd, ...
        return TEMPLATES["Register"]
    return None


def generated_link(path: str, line: int | None) -> SourceLink:
    template = template_of(path)
    return SourceLink(path, line, "generated", None, template, github_url(template) if template else None)


# ---------------------------------------------------------------------------
# The index: derivatives.yaml and native_functions.yaml, cached per torch version
# ---------------------------------------------------------------------------

# Autograd nodes written by hand in C++, not generated from derivatives.yaml:
# the header that declares each (installed under torch/include) and what it does.
CPP_NODES = {
    "AccumulateGrad": (
        "torch/csrc/autograd/functions/accumulate_grad.h",
        "the end of backward for a leaf: adds the gradient that arrives into the leaf's .grad "
        "(sets it, when .grad is None)",
    ),
    "CopySlices": (
        "torch/csrc/autograd/functions/tensor.h",
        "an in-place operation on a view: runs that operation's backward on the view's part "
        "of the base tensor's gradient",
    ),
    "CopyBackwards": (
        "torch/csrc/autograd/functions/tensor.h",
        "Tensor.copy_: passes the gradient to the source, converted to its dtype and device",
    ),
    "GraphRoot": ("torch/csrc/autograd/functions/basic_ops.h", "the engine's starting point: hands out the initial gradients"),
    "Error": ("torch/csrc/autograd/functions/basic_ops.h", "raises an error when backward reaches it"),
    "NotImplemented": ("torch/csrc/autograd/functions/basic_ops.h", "an operation with no derivative: raises when reached"),
    "DelayedError": ("torch/csrc/autograd/functions/basic_ops.h", "raises an error when backward reaches it"),
    "UndefinedGrad": ("torch/csrc/autograd/functions/basic_ops.h", "turns its gradient into an undefined one"),
    "UndefinedGradBackward": ("torch/csrc/autograd/functions/basic_ops.h", "passes undefined gradients on"),
    "Identity": ("torch/csrc/autograd/functions/basic_ops.h", "passes its gradient on unchanged"),
}


class IndexUnavailable(Exception):
    """The index cannot be built here (PyYAML missing, a wheel without torchgen's files)."""


def wheel_path(repository_path: str) -> Path:
    link = repository_link(repository_path)
    local = link.wheel_copy()
    if local is None:
        raise IndexUnavailable(f"this torch install has no copy of {repository_path}")
    return local


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


def build_index() -> dict[str, Any]:
    """Read derivatives.yaml and native_functions.yaml with torchgen (a few seconds)."""
    try:
        from torchgen.gen import parse_native_yaml
        from torchgen.packaged.autograd.load_derivatives import load_derivatives
    except ImportError as error:
        raise IndexUnavailable(f"torchgen cannot load derivatives.yaml here ({error})") from None
    derivatives = wheel_path(DERIVATIVES_YAML)
    native = wheel_path(NATIVE_FUNCTIONS_YAML)
    tags = wheel_path(TAGS_YAML)
    infos, _ = load_derivatives(str(derivatives), str(native), str(tags))
    parsed = parse_native_yaml(str(native), str(tags))  # torchgen cached it while loading
    return {
        "format": INDEX_FORMAT,
        "torch_version": torch.__version__,
        "git_version": torch_commit(),
        "nodes": node_entries(infos, entry_lines(derivatives, "name")),
        "functions": function_entries(parsed),
        "cpp_nodes": cpp_node_entries(),
    }


def node_entries(infos, lines: Mapping[str, int]) -> dict[str, dict]:
    """Node name -> the derivatives.yaml entry it was generated from."""
    nodes = {}
    for by_dispatch_key in infos.values():
        for info in by_dispatch_key.values():
            op = str(info.func.func.name)
            if info.op is None or (info.op in nodes and op not in lines):
                continue  # no node (nothing differentiable), or a derived copy of an entry we have
            inputs = [binding.name for binding in info.args_with_derivatives]
            position = {name: index for index, name in enumerate(inputs)}
            formulas = sorted(
                (
                    {"inputs": list(derivative.var_names), "formula": derivative.original_formula}
                    for derivative in info.derivatives
                ),
                key=lambda formula: min(position.get(name, len(inputs)) for name in formula["inputs"]),
            )
            nodes[info.op] = {
                "op": op,
                "schema": str(info.func.func),
                "line": lines.get(op),
                "inputs": inputs,
                "formulas": formulas,
            }
    return nodes


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


def cpp_node_entries() -> dict[str, dict]:
    """Each hand-written C++ node: its header and the line that declares it (read from the installed header)."""
    entries = {}
    for name, (header, _) in CPP_NODES.items():
        line = None
        local = repository_link(header).wheel_copy()
        if local is not None:
            declaration = re.compile(rf"^struct (TORCH_API )?{name}\b")
            for number, text in enumerate(local.read_text(encoding="utf-8").splitlines(), start=1):
                if declaration.match(text):
                    line = number
                    break
        entries[name] = {"header": header, "line": line}
    return entries


def cache_folder() -> Path:
    """Where the index is cached: $TORCH_STEPTHROUGH_CACHE, else $XDG_CACHE_HOME/torch-stepthrough, else ~/.cache/..."""
    if os.environ.get("TORCH_STEPTHROUGH_CACHE"):
        return Path(os.environ["TORCH_STEPTHROUGH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "torch-stepthrough"


def cache_file(folder: Path) -> Path:
    version = re.sub(r"[^\w.+-]", "_", torch.__version__)
    return folder / f"below-python-{version}-{torch_commit()[:12]}-v{INDEX_FORMAT}.json"


@dataclass
class Index:
    """The formulas, native functions and C++ nodes of the installed torch."""

    nodes: dict[str, dict] = field(default_factory=dict)
    functions: dict[str, dict] = field(default_factory=dict)
    cpp_nodes: dict[str, dict] = field(default_factory=dict)
    origin: str = ""  # where it came from: the cache file, or how it was built
    problem: str | None = None  # why it is empty, when it is


def read_cache(path: Path) -> dict | None:
    """The cached index at ``path``, or None for anything that is not exactly what ``write_cache`` wrote."""
    try:
        return valid_index(json.loads(cache_bytes(path)))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None  # missing, not ours, unreadable, damaged, or half-written by something that is not us


class UntrustedCache(ValueError):
    """Why a cache file or folder is not used; the message says it."""


def trusted_folder(folder: Path) -> None:
    """Raise UntrustedCache unless ``folder`` is a real folder of this user's that no one else can write to."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise UntrustedCache(f"{folder} is not a folder")
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        raise UntrustedCache(f"{folder} is not this user's alone (owner or others can write to it)")


def cache_bytes(path: Path) -> bytes:
    """The JSON of the cache at ``path``, checked: regular, private, small, and matching its sha256 line."""
    trusted_folder(path.parent)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # no link, no waiting on a FIFO
    handle = os.open(path, flags)
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or info.st_size > CACHE_LIMIT:
            raise UntrustedCache(f"{path} is not a regular file of at most {CACHE_LIMIT} bytes")
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
            raise UntrustedCache(f"{path} is not this user's alone")
        with os.fdopen(os.dup(handle), "rb") as file:
            content = file.read(CACHE_LIMIT + 1)
    finally:
        os.close(handle)
    first, _, rest = content.partition(b"\n")
    if first != b"sha256 " + hashlib.sha256(rest).hexdigest().encode():
        raise UntrustedCache(f"{path} does not match its sha256")
    return rest


def valid_index(data: Any) -> dict:
    """``data`` if it has exactly the layout ``build_index`` makes for the installed torch, else ValueError."""
    if not isinstance(data, dict) or set(data) != {"format", "torch_version", "git_version", "nodes", "functions", "cpp_nodes"}:
        raise ValueError("not an index")
    if (data["format"], data["torch_version"], data["git_version"]) != (INDEX_FORMAT, torch.__version__, torch_commit()):
        raise ValueError("an index of another format or torch")
    nodes, functions, cpp_nodes = data["nodes"], data["functions"], data["cpp_nodes"]
    if not (isinstance(nodes, dict) and isinstance(functions, dict) and isinstance(cpp_nodes, dict)):
        raise ValueError("not an index")
    if "MulBackward0" not in nodes or "add.Tensor" not in functions or set(cpp_nodes) != set(CPP_NODES):
        raise ValueError("an index with entries missing")  # never fewer formulas than torch has
    for name, node in nodes.items():
        check(isinstance(node, dict) and set(node) == {"op", "schema", "line", "inputs", "formulas"}, name)
        check(text(name) and text(node["op"]) and text(node["schema"]) and line(node["line"]), name)
        check(texts(node["inputs"]) and isinstance(node["formulas"], list), name)
        for formula in node["formulas"]:
            check(isinstance(formula, dict) and set(formula) == {"inputs", "formula"}, name)
            check(texts(formula["inputs"]) and text(formula["formula"]), name)
    for name, function in functions.items():
        check(isinstance(function, dict) and set(function) == {"schema", "line", "structured_delegate", "kernels"}, name)
        delegate = function["structured_delegate"]
        check(text(name) and text(function["schema"]) and line(function["line"]), name)
        check((delegate is None or text(delegate)) and isinstance(function["kernels"], dict), name)
        for key, kernel in function["kernels"].items():
            check(text(key) and isinstance(kernel, list) and len(kernel) == 3, name)
            check(text(kernel[0]) and isinstance(kernel[1], bool) and text(kernel[2]), name)
    for name, cpp_node in cpp_nodes.items():
        check(isinstance(cpp_node, dict) and set(cpp_node) == {"header", "line"}, name)
        check(cpp_node["header"] == CPP_NODES[name][0] and line(cpp_node["line"]), name)
    return data


# Characters that would reach a terminal as control codes (escape sequences); a formula has none.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def text(value: Any) -> bool:
    return isinstance(value, str) and len(value) < 100_000 and CONTROL.search(value) is None


def texts(value: Any) -> bool:
    return isinstance(value, list) and all(text(item) for item in value)


def line(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0)


def check(condition: bool, name: str) -> None:
    if not condition:
        raise ValueError(f"a damaged entry: {name[:80]!r}")


def write_cache(path: Path, data: dict) -> str | None:
    """Save the index, first line its sha256, in a private folder; returns why it was not saved, or None."""
    from traces.files import write_atomically

    content = json.dumps(data, separators=(",", ":")).encode()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        trusted_folder(path.parent)
        write_atomically(path, b"sha256 " + hashlib.sha256(content).hexdigest().encode() + b"\n" + content)
        os.chmod(path, 0o600)
    except UntrustedCache as error:
        return str(error)
    except OSError as error:
        return f"{error.strerror or error} ({path})"
    return None


def load_index(folder: Path | None = None) -> Index:
    """The index from the cache in ``folder`` (default ``cache_folder()``), built and cached when missing.

    Never raises for a cache problem: an unreadable cache is rebuilt, an
    unwritable one is left alone and the index lives in memory only.
    """
    path = cache_file(folder if folder is not None else cache_folder())
    data = read_cache(path)
    if data is not None:
        return index_from(data, f"read from {path}")
    try:
        data = build_index()
    except IndexUnavailable as error:
        return Index(origin="not built", problem=str(error))
    unsaved = write_cache(path, data)
    origin = f"built and cached in {path}" if unsaved is None else f"built in memory; not cached: {unsaved}"
    return index_from(data, origin)


def index_from(data: dict, origin: str) -> Index:
    return Index(data["nodes"], data["functions"], data["cpp_nodes"], origin)


@functools.cache
def installed_index() -> Index:
    """This process's index, loaded once (it is read-only data, the same for the whole run)."""
    return load_index()


# ---------------------------------------------------------------------------
# Derivative formulas of autograd nodes
# ---------------------------------------------------------------------------

# Some formulas call helpers defined in C++ (torch/csrc/autograd/FunctionsManual.cpp,
# not in the wheel). For the common ones, what they compute for real tensors, in
# plain terms. Keyed by the exact text in derivatives.yaml, so a formula that
# changes in a later torch simply loses its plain form; tests/test_native.py
# checks that every key is still a formula of the installed torch.
PLAIN_FORMULAS = {
    "mul_tensor_backward(grad, other, self.scalar_type())": "grad * other",
    "mul_tensor_backward(grad, self, other.scalar_type())": "grad * self",
    "handle_r_to_c(self.scalar_type(), grad)": "grad",
    "handle_r_to_c(other.scalar_type(), maybe_multiply(grad, alpha.conj()))": "grad * alpha",
    "handle_r_to_c(other.scalar_type(), maybe_multiply(-grad, alpha.conj()))": "-grad * alpha",
    "div_tensor_self_backward(grad, other, self.scalar_type())": "grad / other",
    "div_tensor_other_backward(grad, self, other)": "-grad * self / other**2",
    "threshold_backward(grad, result, 0)": "grad * (result > 0)",
    "maybe_multiply(grad, beta.conj())": "grad * beta",
    "mm_mat1_backward(grad, mat2, mat1.sym_sizes(), mat1.sym_strides(), mat1.layout(), alpha)": "alpha * (grad @ mat2.T)",
    "mm_mat2_backward(grad, mat1, mat2.sym_sizes(), mat2.sym_strides(), mat2.layout(), alpha)": "alpha * (mat1.T @ grad)",
    "_log_softmax_backward_data(grad, result, dim, self.scalar_type())": "grad - exp(result) * grad.sum(dim, keepdim=True)",
}


@dataclass
class Formula:
    inputs: list[str]  # the inputs whose gradient it computes, e.g. ["self"]
    formula: str  # as derivatives.yaml writes it
    plain: str | None = None  # the same in plain terms, for real tensors, where known


@dataclass
class NodeDerivative:
    """What computes an autograd node's gradients.

    ``kind`` is ``"formula"`` for a node generated from derivatives.yaml,
    ``"c++"`` for one written by hand in C++ (AccumulateGrad, CopySlices, ...),
    ``"custom"`` for a ``torch.autograd.Function`` written in Python,
    ``"compiled"`` for the backward of a ``torch.compile`` region, and
    ``"unknown"`` for anything else; ``summary`` says it in one line.
    """

    kind: str
    summary: str
    op: str | None = None  # the ATen operator whose entry it is, e.g. "mul.Tensor"
    schema: str | None = None
    inputs: list[str] = field(default_factory=list)  # in the order of the node's next_functions
    formulas: list[Formula] = field(default_factory=list)
    source: SourceLink | None = None

    def formula_for(self, name: str) -> Formula | None:
        return next((formula for formula in self.formulas if name in formula.inputs), None)


def node_derivative(name: str, index: Index | None = None) -> NodeDerivative:
    """Describe the node class ``name`` ("MulBackward0", "AccumulateGrad", ...)."""
    index = index if index is not None else installed_index()
    entry = index.nodes.get(name)
    if entry is not None:
        return NodeDerivative(
            kind="formula",
            summary=f"derivatives.yaml entry of {entry['schema']}",
            op=entry["op"],
            schema=entry["schema"],
            inputs=list(entry["inputs"]),
            formulas=[
                Formula(list(f["inputs"]), f["formula"], PLAIN_FORMULAS.get(f["formula"])) for f in entry["formulas"]
            ],
            source=repository_link(DERIVATIVES_YAML, entry["line"]),
        )
    if name in CPP_NODES:
        header, description = CPP_NODES[name]
        line = index.cpp_nodes.get(name, {}).get("line")  # the cache keeps where, this module says what
        return NodeDerivative("c++", f"written in C++, no formula: {description}", source=repository_link(header, line))
    if name == "CompiledFunctionBackward":
        return NodeDerivative(
            "compiled",
            "the backward of a torch.compile region: one node for the whole compiled graph, "
            "whose gradient code AOTAutograd traced ahead of time (no per-op formulas here)",
        )
    if name.endswith("Backward") and name != "Backward":
        return NodeDerivative(
            "custom",
            f"a custom torch.autograd.Function ({name.removesuffix('Backward')}): its backward() is Python "
            "code you can set a breakpoint in",
        )
    if index.problem:
        return NodeDerivative("unknown", f"no formula: the formula index is unavailable ({index.problem})")
    return NodeDerivative("unknown", "not in derivatives.yaml: a node defined in C++ by torch or an extension")


def slot_names(derivative: NodeDerivative, slots: int) -> list[str]:
    """The input each of a node's next_functions slots is for ("self", "other", "tensors[1]", ...)."""
    inputs = derivative.inputs
    if len(inputs) == slots:
        return list(inputs)
    if len(inputs) == 1:  # one list input (cat's tensors): a slot per tensor
        return [f"{inputs[0]}[{index}]" for index in range(slots)]
    return [f"input {index}" for index in range(slots)]


IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?![\w(])")  # a name, not a method or function called


def gradient_text(summary) -> str | None:
    """A gradient (a ``TensorSummary``) in an equation: its numbers when small, else dtype[shape]."""
    if summary is None:
        return None
    if summary.values is not None and (not isinstance(summary.values, list) or len(summary.values) <= 4):
        return str(summary)
    return f"{summary.dtype}{list(summary.shape)}"


def saved_text(saved) -> str | None:
    """A saved value (a ``SavedValue``) in an equation: its numbers when small, else dtype[shape]."""
    if saved.shape is not None:
        if saved.values is not None and (not isinstance(saved.values, list) or len(saved.values) <= 4):
            return format_values(saved.values)
        return f"{saved.dtype}{list(saved.shape)}"
    return saved.value  # a scalar or size, as text; None if freed before it was read


def format_values(values) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(format_values(v) for v in values) + "]"
    if isinstance(values, float):
        return f"{values:.4g}"
    return str(values)


def gradient_equations(
    derivative: NodeDerivative, node, step, slot_targets: Mapping[int, str | None], not_asked: Mapping[int, str] | None = None
) -> list[str]:
    """One line per input of a node that ran in backward: its formula, with names and numbers.

    ``node`` is the ``AutogradNode`` (its saved values and variable name),
    ``step`` the ``BackwardStep`` (the gradients arriving and leaving), and
    ``slot_targets`` the variable name at the end of each edge slot, where
    known; ``not_asked`` the slots whose gradient the call did not ask for, with why
    (``AutogradGraph.not_asked``). For ``y = a * b``: ``grad_a = grad * b = 1 * 2 = 2``.
    """
    not_asked = not_asked or {}
    arriving = gradient_text(step.arriving[0]) if step.arriving else None
    if derivative.kind == "c++" and node.is_leaf:
        return [f"{node.variable or 'leaf'}.grad += {arriving}"] if arriving else []
    if derivative.kind != "formula":
        return []
    names = slot_names(derivative, len(step.leaving))
    variables = {name: slot_targets.get(slot) for slot, name in enumerate(names)}
    variables["result"] = node.variable
    values = {saved.name: saved_text(saved) for saved in node.saved}
    values["grad"] = arriving
    lines = []
    first_left: dict[int, str] = {}  # a formula that computes several gradients at once is written once
    for slot, name in enumerate(names):
        left = f"grad_{slot_targets.get(slot) or name}"
        if step.leaving[slot] is None:
            lines.append(f"{left}: none ({not_asked.get(slot, 'this input needs no gradient')})")
            continue
        formula = derivative.formula_for(name.split("[")[0])
        if formula is None:
            continue
        result = gradient_text(step.leaving[slot])
        if id(formula) in first_left:
            lines.append(f"{left} = (the formula of {first_left[id(formula)]}) = {result}")
            continue
        first_left[id(formula)] = left
        line = equation(left, formula, variables, values, result)
        lines.append(line + broadcast_note(formula, step.arriving[0] if step.arriving else None, step.leaving[slot]))
    return lines


# Plain formulas that keep the shape of ``grad``: when the gradient that leaves
# has another shape, the input was broadcast in forward, and autograd summed the
# gradient back over the broadcast dimensions (as it does for every broadcast input).
ELEMENTWISE_PLAIN_FORMULAS = {
    "grad", "grad * other", "grad * self", "grad * alpha", "-grad * alpha", "grad * beta", "grad / other",
    "-grad * self / other**2", "grad * (result > 0)",
}  # fmt: skip


def broadcast_note(formula: Formula, arriving, leaving) -> str:
    if formula.plain not in ELEMENTWISE_PLAIN_FORMULAS or arriving is None or leaving is None:
        return ""
    if list(arriving.shape) == list(leaving.shape):
        return ""
    return " (summed over the dimensions broadcasting added in forward)"


LONGEST_FORMULA = 80  # characters of a formula in an equation (C++ formulas can run to hundreds)


def equation(
    left: str,
    formula: Formula,
    variables: Mapping[str, str | None],
    values: Mapping[str, str | None],
    result: str | None,
) -> str:
    """``left = formula [= the formula with numbers] = result``; the numbers only for a plain formula.
    A long formula with no plain form is cut short: the graph view and the JSON have it whole."""
    if formula.plain is None:
        written = formula.formula
        parts = [written if len(written) <= LONGEST_FORMULA else written[: LONGEST_FORMULA - 2] + " …"]
    else:
        parts = [IDENTIFIER.sub(lambda m: variables.get(m.group()) or m.group(), formula.plain)]
        used = {name for name in IDENTIFIER.findall(formula.plain) if name in variables or name in values}
        if used and all(values.get(name) is not None for name in used):
            parts.append(IDENTIFIER.sub(lambda m: values[m.group()] if m.group() in used else m.group(), formula.plain))
    if result is not None:
        parts.append(result)
    shown = [part for index, part in enumerate(parts) if index == 0 or part != parts[index - 1]]
    return " = ".join([left, *shown])


# ---------------------------------------------------------------------------
# Kernels behind ATen operators: native_functions.yaml and the dispatcher
# ---------------------------------------------------------------------------

# The dispatcher's own phrases for what is registered at a key.
REGISTRATION = re.compile(r"^(?P<key>\w+): (?P<fallthrough>fallthrough )?registered at (?P<path>.+):(?P<line>\d+) \[(?P<kind>[^\]]+)\]$")


@dataclass
class DispatchStep:
    key: str  # e.g. "AutogradCPU"
    kernel: str  # what the dispatcher has there: "autograd kernel", "kernel", "math kernel", "backend fallback", ...
    fallthrough: bool  # the key passes the call on to the next one without running anything
    registered: SourceLink


def dispatch_table(op: str, keys: Iterable[str] | None = None) -> dict[str, DispatchStep]:
    """What is registered for an operator, by dispatch key (only ``keys``, when given), as the live dispatcher says."""
    try:
        dump = torch._C._dispatch_dump_table(op)
    except RuntimeError:
        return {}  # not an operator the dispatcher knows
    wanted = set(keys) if keys is not None else None
    table = {}
    for line in dump.splitlines():
        key = line.partition(":")[0]
        if wanted is not None and key not in wanted:
            continue  # a hundred-odd keys per op: link only the ones asked for
        match = REGISTRATION.match(line.strip())
        if match:
            table[key] = DispatchStep(
                key, match["kind"], bool(match["fallthrough"]), link_for_build_path(match["path"], int(match["line"]))
            )
    return table


# Keys whose kernels run and then hand the call on below themselves; a
# "math kernel" (CompositeImplicitAutograd) instead calls other operators.
PASSING_ON = re.compile(r"^(Autograd\w*|ADInplaceOrView|Autocast\w*|Functionalize|Python\w*|Tracer|FuncTorch\w*)$")


def dispatch_path(table: Mapping[str, DispatchStep], keys: list[str]) -> list[DispatchStep]:
    """The keys a call went through, highest priority first, up to the kernel that did the work.

    ``table`` is the operator's ``dispatch_table``; ``keys`` are the dispatch keys of the call's tensors, lowest priority first
    (as ``torch._C._dispatch_keys`` lists them). Keys with nothing registered
    for this operator are skipped by the dispatcher, and here.
    """
    path = []
    for key in reversed(keys):
        step = table.get(key)
        if step is None:
            continue
        path.append(step)
        if not step.fallthrough and (step.kernel == "math kernel" or not PASSING_ON.match(key)):
            break
    return path


@dataclass
class CppLayer:
    """Consecutive C++ frames of one layer, outermost first; plumbing frames are counted, not listed."""

    layer: str  # "Python", "Python binding", "operator entry", "autograd", "dispatch", "kernel",
    # "handed to the trace" (the trace's dispatch mode) or "other"
    functions: list[str]
    folded: int = 0


@dataclass
class OpKernel:
    """What is below one ATen operator: its native_functions.yaml entry, the kernel and the dispatch path."""

    op: str  # e.g. "aten::mul.Tensor"
    phase: str = "forward"  # of the call described (its C++ path differs between forward and backward)
    schema: str | None = None
    source: SourceLink | None = None  # its native_functions.yaml entry
    structured_delegate: str | None = None  # the out= variant whose kernel does the work, e.g. "mul.out"
    device_key: str | None = None  # the backend key of the call's tensors, e.g. "CPU"
    kernel: str | None = None  # the kernel's name in native_functions.yaml, e.g. "mul_out"
    kernel_entry: str | None = None  # the entry that names it: the op itself or its delegate
    kernel_key: str | None = None  # the key it is listed under, e.g. "CPU" or "CompositeExplicitAutograd"
    symbol: str | None = None  # the C++ function to break on, e.g. "at::native::structured_mul_out::impl"
    registered: SourceLink | None = None  # where the dispatcher has the kernel for device_key registered
    dispatch: list[DispatchStep] = field(default_factory=list)
    cpp_path: list[CppLayer] | None = None  # with --native: the C++ frames, grouped
    note: str | None = None


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


def describe_op(op: str, keys: list[str], index: Index | None = None, phase: str = "forward") -> OpKernel:
    """Everything known below the operator ``op`` ("aten::mul.Tensor"), called with tensors of ``keys``."""
    index = index if index is not None else installed_index()
    table = dispatch_table(op, keys)
    kernel = OpKernel(op=op, phase=phase, device_key=keys[0] if keys else None, dispatch=dispatch_path(table, keys))
    if kernel.device_key in table:
        kernel.registered = table[kernel.device_key].registered
    namespace, _, name = op.partition("::")
    entry = index.functions.get(name) if namespace == "aten" else None
    if entry is None and index.problem:
        kernel.note = f"native_functions.yaml could not be read: {index.problem}"
        return kernel
    if entry is None:
        kernel.note = (
            f"not in native_functions.yaml: {op} is registered with the dispatcher directly "
            "(see where it is registered)"
        )
        return kernel
    kernel.schema = entry["schema"]
    kernel.source = repository_link(NATIVE_FUNCTIONS_YAML, entry["line"])
    kernel.structured_delegate = entry["structured_delegate"]
    found = find_kernel(index.functions, name, kernel.device_key or "CPU")
    if found is not None:
        kernel.kernel_entry, kernel.kernel_key, (kernel.kernel, structured, cpp_namespace) = found
        kernel.symbol = kernel_symbol(kernel.kernel, structured, cpp_namespace)
    return kernel


# ---------------------------------------------------------------------------
# The first call of each operator: its dispatch keys and, on request, its C++ frames
# ---------------------------------------------------------------------------

# The keys autograd's own kernel excludes while it hands a call on, so that a
# dispatch mode below it sees them excluded; they were active when the call came in.
KEYS_ABOVE_A_DISPATCH_MODE = re.compile(r"^(Autograd\w*|ADInplaceOrView)$")


@dataclass
class FirstCall:
    """What the ops view notes at an operator's first call; turned into an ``OpKernel`` at the end."""

    keys: list[str]  # dispatch keys of the call's tensors that were active, lowest priority first
    traceback: Any = None  # a CapturedTraceback with C++ frames, when asked for
    problem: str | None = None  # why no C++ frames were captured


def tensor_keys(tensors: Iterable[torch.Tensor]) -> list[str]:
    """The dispatch keys of some tensors that the dispatcher would use now, lowest priority first."""
    keys: list[str] = []
    for tensor in tensors:
        text = str(torch._C._dispatch_keys(tensor))  # "DispatchKeySet(CPU, ADInplaceOrView, AutogradCPU, ...)"
        for key in re.findall(r"\w+", text.partition("(")[2]):
            if key not in keys:
                keys.append(key)
    return [key for key in keys if KEYS_ABOVE_A_DISPATCH_MODE.match(key) or not tls_excluded(key)]


def tls_excluded(key: str) -> bool:
    """Whether the thread turned the key off (the Autocast keys, unless autocast is on)."""
    dispatch_key = getattr(torch._C.DispatchKey, key, None)
    return dispatch_key is not None and torch._C._dispatch_tls_is_dispatch_key_excluded(dispatch_key)


def observe_call(tensors: list[torch.Tensor], capture_cpp: bool) -> FirstCall:
    """Called from inside a dispatch mode, at an operator's first call."""
    call = FirstCall(tensor_keys(tensors))
    if capture_cpp:
        try:
            from torch.utils._traceback import CapturedTraceback

            call.traceback = CapturedTraceback.extract(cpp=True)
        except Exception as error:  # an unwinder this platform lacks: say so, never fail the run
            call.problem = f"C++ frames could not be captured here: {error}"
    return call


def describe_ops(
    first_calls: Mapping[tuple[str, str], FirstCall], stop_at: str, index: Index | None = None
) -> list[OpKernel]:
    """One ``OpKernel`` per (phase, operator), in first-call order, with C++ paths where captured.

    ``stop_at`` is the folder of the code that captured the frames (the tracer):
    the C++ path ends where the dispatcher handed the call to it.
    """
    kernels = [describe_op(op, call.keys, index, phase) for (phase, op), call in first_calls.items()]
    captured = [(kernel, call.traceback) for kernel, call in zip(kernels, first_calls.values()) if call.traceback]
    if captured:
        from torch._C._profiler import symbolize_tracebacks

        symbolized = symbolize_tracebacks([traceback.tb for _, traceback in captured])
        for (kernel, _), frames in zip(captured, symbolized):
            kernel.cpp_path = cpp_layers(list(reversed(frames)), stop_at)  # outermost first
    return kernels


# ---------------------------------------------------------------------------
# C++ frames, grouped into the layers a learner should know
# ---------------------------------------------------------------------------

# The layers, tried in order on a frame's short name.
LAYERS = [
    ("kernel", re.compile(r"^at::(native|cpu|cuda|meta|compositeimplicitautograd|compositeexplicitautograd\w*)::|wrapper_")),
    ("operator entry", re.compile(r"^at::_ops::\w+::call$")),
    # Where the dispatcher hands the call to a Python dispatch mode: the trace's own.
    ("handed to the trace", re.compile(r"pythonFallback|pythonTLSSnapshotFallback|PyInterpreter|handle_torch_function")),
    (
        "Python binding",
        re.compile(r"THP|TypeError_to_NotImplemented_|^pybind11::|^torch::utils::|^torch::impl::"),
    ),
    ("autograd", re.compile(r"^torch::autograd::|^torch::ADInplaceOrView::")),
    ("dispatch", re.compile(r"^c10::|^at::_ops::\w+::redispatch$|[Ff]allback|^at::impl::")),
]

# Frames that only pass a call along: counted in their layer, not listed.
PLUMBING = re.compile(
    r"BoxedKernelWrapper|make_boxed_from_unboxed_functor|wrap_kernel_functor_unboxed_|make_boxed_function"
    r"|call_functor_with_args_from_stack|TypeError_to_NotImplemented_|^pybind11::|^std::|^c10::impl::|^c10::Dispatcher::"
)


def short_name(symbol: str) -> str:
    """A demangled C++ name without its return type, template arguments and parameters."""
    text = symbol.replace("(anonymous namespace)", "{anonymous}").strip()
    text = re.sub(r"\s+const$", "", text)
    if text.endswith(")"):  # the parameter list: drop it, from its matching "("
        depth = 0
        for index in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[index], 0)
            if depth == 0:
                text = text[:index]
                break
    while True:  # template arguments, innermost first
        stripped = re.sub(r"<[^<>]*>", "", text)
        if stripped == text:
            break
        text = stripped
    text = text.rsplit(" ", 1)[-1]  # the return type, if any
    return text.replace("{anonymous}", "(anonymous namespace)")


def is_python_source(filename: str) -> bool:
    return filename.endswith(".py")


def is_interpreter(frame: Mapping[str, Any]) -> bool:
    """A frame of CPython or the C library rather than of torch."""
    filename, name = frame["filename"], frame["name"]
    return filename.endswith((".c", ".h")) or ("::" not in name and "THP" not in name)


def layer_of(name: str) -> str:
    for layer, pattern in LAYERS:
        if pattern.search(name):
            return layer
    return "other"


def cpp_layers(frames: list[Mapping[str, Any]], stop_at: str) -> list[CppLayer]:
    """Group a captured stack (outermost first, as ``{filename, line, name}``) into layers.

    The path starts with the last Python line outside ``stop_at`` (the tracer's
    folder) and runs through torch's C++ frames to where the dispatcher handed
    the call over to the tracer. (The symbolizer does not always put Python
    frames in their place among the C++ ones, so they are taken apart.)
    """
    stop_at = str(Path(stop_at).resolve()) + os.sep
    python = [f for f in frames if is_python_source(f["filename"]) and not is_capture_machinery(f, stop_at)]
    native = [f for f in frames if not is_python_source(f["filename"])]
    end = next((i for i, f in enumerate(native) if "CapturedTraceback::gather" in f["name"]), len(native))
    while end > 0 and (is_interpreter(native[end - 1]) or native[end - 1]["name"].startswith("pybind11::")):
        end -= 1  # the interpreter and pybind11 calling the capture itself
    start = next((i for i, f in enumerate(native[:end]) if not is_interpreter(f)), end)
    layers: list[CppLayer] = []
    if python:
        line = python[-1]
        layers.append(CppLayer("Python", [f"{portable_path(line['filename'])}:{line['line']} {line['name']}"]))
    for frame in native[start:end]:
        if is_interpreter(frame):  # CPython between two stretches of C++: plumbing of the layer it sits in
            name, layer = frame["name"], layers[-1].layer
        else:
            name = short_name(frame["name"])
            layer = layer_of(name)
            if layer == "other" and PLUMBING.search(name) and layers:
                layer = layers[-1].layer  # std::function and the like: plumbing of the layer it sits in
        if not layers or layers[-1].layer != layer:
            layers.append(CppLayer(layer, []))
        if is_interpreter(frame) or PLUMBING.search(name):
            layers[-1].folded += 1
        else:
            layers[-1].functions.append(name)
    return layers


def is_capture_machinery(frame: Mapping[str, Any], stop_at: str) -> bool:
    """A Python frame of the tracer, or of torch's traceback capture that it called."""
    filename = str(frame["filename"])
    return filename.startswith(stop_at) or filename.endswith(os.path.join("torch", "utils", "_traceback.py"))


def portable_path(path: str) -> str:
    """A path that means the same on another machine: inside site-packages or the working folder, relative."""
    absolute = Path(path).resolve()
    for base in (SITE_PACKAGES, Path.cwd().resolve()):
        if absolute.is_relative_to(base):
            return absolute.relative_to(base).as_posix()
    return path
