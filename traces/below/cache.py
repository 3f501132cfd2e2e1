"""The offline index of the installed torch: built once with torchgen, cached per torch version.

Loading ``derivatives.yaml`` through torchgen (``torchgen.gen.parse_native_yaml``,
``torchgen.packaged.autograd.load_derivatives``) takes a few seconds, so the
index (formulas, native functions, the C++ nodes' headers) is built once per
torch version and kept as JSON in a per-user cache folder. A cache that cannot
be read or written never fails a run: the index is then built in memory.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from traces.basics.saving import write_atomically
from traces.below.links import repository_link, torch_commit
from traces.below.nodes import CPP_NODES, DERIVATIVES_YAML, cpp_node_entries, node_entries
from traces.below.schema import NATIVE_FUNCTIONS_YAML, TAGS_YAML, entry_lines, function_entries

# Bump when the cached index's layout changes: old cache files are then ignored.
INDEX_FORMAT = 3  # 3: a first line with the sha256 of the JSON after it
CACHE_LIMIT = 64 * 1024 * 1024  # bytes; the index of torch 2.x is about 1.2 MB


class IndexUnavailable(Exception):
    """The index cannot be built here (PyYAML missing, a wheel without torchgen's files)."""


def wheel_path(repository_path: str) -> Path:
    link = repository_link(repository_path)
    local = link.wheel_copy()
    if local is None:
        raise IndexUnavailable(f"this torch install has no copy of {repository_path}")
    return local


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
