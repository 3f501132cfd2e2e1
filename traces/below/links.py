"""Links to PyTorch's source at the commit the installed torch was built from.

Reads ``torch.version.git_version`` (the commit; the release tag when a build
does not say) and ``torch.__file__`` (where the wheel keeps its copies of
repository files). Every file of PyTorch's repository then gets a plain GitHub
URL at that commit. Files generated at build time (``RegisterCPU_0.cpp``,
``VariableType_2.cpp``) are not in the repository: they are named as such,
with the template in the repository that generates them. Paths as the
dispatcher reports them (absolute paths on the machine that built the wheel)
are turned into repository paths here too.

Nothing is fetched: a link is text, and ``SourceLink.wheel_copy`` finds the
installed copy of a file to open locally.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import torch

REPOSITORY = "https://github.com/pytorch/pytorch"
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


def portable_path(path: str) -> str:
    """A path that means the same on another machine: inside site-packages or the working folder, relative."""
    absolute = Path(path).resolve()
    for base in (SITE_PACKAGES, Path.cwd().resolve()):
        if absolute.is_relative_to(base):
            return absolute.relative_to(base).as_posix()
    return path
