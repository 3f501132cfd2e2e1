"""Saving a trace: JSON, Mermaid and, where Graphviz is installed, SVG."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from traces.trace import Trace


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomically(path: Path, text: str) -> Path:
    """Write to a temporary file beside ``path``, then replace ``path`` with it,
    so that an interrupted write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes it private
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def save_trace(trace: Trace, directory: Path) -> tuple[list[Path], list[str]]:
    """Write ``<scenario>.json``, ``.mmd`` and ``.svg`` into ``directory``.

    Returns the files written, and notes on what could not be written (the SVG
    when Graphviz is missing).
    """
    from traces.json_file import trace_to_dict
    from traces.mermaid import to_mermaid
    from traces.picture import NO_DOT, dot_available, to_svg

    directory = Path(directory)
    stem = directory / trace.scenario
    written = [
        write_atomically(stem.with_suffix(".json"), json.dumps(trace_to_dict(trace), indent=2) + "\n"),
        write_atomically(stem.with_suffix(".mmd"), to_mermaid(trace)),
    ]
    if not dot_available():
        return written, [NO_DOT]
    written.append(write_atomically(stem.with_suffix(".svg"), to_svg(trace)))
    return written, []
