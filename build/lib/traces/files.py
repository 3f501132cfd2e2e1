"""Saving files atomically, and a trace as JSON, Mermaid and, where Graphviz is installed, SVG."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from traces.trace import Trace


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; when the block ends, it replaces ``path``.

    The replacement is one step (``os.replace``), so a write that fails or is
    interrupted leaves an earlier ``path`` as it was, and no half file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes it private
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, content: str | bytes) -> Path:
    with replacing(path) as temporary:
        if isinstance(content, bytes):
            temporary.write_bytes(content)
        else:
            temporary.write_text(content)
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
