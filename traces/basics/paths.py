"""File paths as a saved trace writes them: the same on every machine.

The terminal names files relative to the current folder when inside it, else by
absolute path (``places.shown_path``): either way a link in VSCode's terminal.
A saved trace is read elsewhere (``traces/recorded/`` is in the repository), so
every path written into it goes through ``portable_path``:

- a file of an installed package or of Python's standard library: relative to
  the folder it is imported from, e.g. ``torch/autograd/__init__.py``;
- a file of this project: relative to the project's folder, e.g. ``scenarios/backward.py``;
- any other file under the current folder (a script of your own; for ``python -m
  traces``, the folder it was started in): relative to that folder, e.g. ``my_model.py``;
- under your home folder: ``~/...``, which does not name you;
- a file anywhere else: its name alone, e.g. ``net.py`` (its folder is this machine's);
- anything that is not an absolute path (``<string>``) as it is.

So no saved file names a folder of the machine that made it.

Separators are always ``/``.
"""

from __future__ import annotations

import functools
import os
import site
import sysconfig
from pathlib import Path

import torch

from traces.basics.places import base_folder

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # traces/basics/paths.py


@functools.cache
def import_roots() -> tuple[str, ...]:
    """Folders that installed packages and the standard library are imported from, longest first."""
    roots = {os.path.dirname(os.path.dirname(torch.__file__))}  # even where torch is not in site-packages
    for key in ("purelib", "platlib", "stdlib", "platstdlib"):
        roots.add(sysconfig.get_paths()[key])
    roots.update(getattr(site, "getsitepackages", list)())
    roots.add(site.getusersitepackages())
    roots = {os.path.realpath(root) for root in roots if root}
    return tuple(sorted(roots, key=len, reverse=True))


def portable_path(path: str) -> str:
    """``path`` as a saved trace writes it (see the module's docstring)."""
    if not os.path.isabs(path):
        return Path(path).as_posix()
    return _portable(os.path.realpath(path), base_folder(), os.path.expanduser("~"))


@functools.lru_cache(maxsize=4096)
def _portable(path: str, cwd: str, home: str) -> str:
    for root in (*import_roots(), str(PROJECT_ROOT), cwd):
        if is_under(path, root):
            return Path(os.path.relpath(path, root)).as_posix()
    home = os.path.realpath(home)
    if home != os.sep and is_under(path, home):
        return "~/" + Path(os.path.relpath(path, home)).as_posix()
    return os.path.basename(path) or Path(path).as_posix()


def is_under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)
