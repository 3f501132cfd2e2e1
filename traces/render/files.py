"""A trace saved as a set of files: JSON, Mermaid, HTML and SVG.

The set (``TRACE_SET``) is written with ``traces.basics.saving.write_set``: the JSON is
the set's index, naming every other file with the sha256 of its bytes, and it is
written last, so a reader finds a whole set or no ``name.json``
(``set_problems`` is the reader's check).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from traces.basics.saving import digest, write_set
from traces.data.trace import Trace
from traces.render.json_file import trace_to_json
from traces.render.mermaid import to_mermaid
from traces.render.page import to_html
from traces.render.picture import NO_DOT, dot_available, to_svg


def render_mermaid(trace: Trace, directory: Path, depth: int | None) -> tuple[bytes | None, str | None]:
    return to_mermaid(trace, depth).encode(), None


def render_page(trace: Trace, directory: Path, depth: int | None) -> tuple[bytes | None, str | None]:
    return to_html(trace, Path(directory)).encode(), None


def render_svg(trace: Trace, directory: Path, depth: int | None) -> tuple[bytes | None, str | None]:
    if not dot_available():
        return None, NO_DOT
    svg = to_svg(trace, depth)
    return (svg.encode() if isinstance(svg, str) else svg), None


# The files of a trace's set besides its JSON, and what makes each: (bytes, None), or
# (None, why not) when it cannot be made here, and an older file of that name is removed.
TRACE_SET: list[tuple[str, Callable[[Trace, Path, int | None], tuple[bytes | None, str | None]]]] = [
    (".mmd", render_mermaid),
    (".html", render_page),
    (".svg", render_svg),
]


def save_trace(trace: Trace, directory: Path, depth: int | None = None) -> tuple[list[Path], list[str]]:
    """Write ``<scenario>.json`` and the files of ``TRACE_SET`` into ``directory`` as one set (``write_set``).

    The pictures show a model by module, ``depth`` levels deep (see ``traces.render.drawing``).
    Returns the files written (the JSON first), and notes on what could not be
    written (the SVG when Graphviz is missing; an older SVG is then removed, as it showed another run).
    """
    stem = Path(directory) / trace.scenario
    others: dict[Path, bytes | None] = {}
    notes = []
    for suffix, render in TRACE_SET:
        content, why_not = render(trace, Path(directory), depth)
        others[stem.with_suffix(suffix)] = content
        if why_not is not None:
            notes.append(why_not)
    stale = [path for path, content in others.items() if content is None and path.is_file()]
    for path in [path for path, content in others.items() if content is None and not path.is_file()]:
        del others[path]  # nothing to write, nothing to remove
    written = write_set(stem.with_suffix(".json"), others, lambda files: trace_to_json(trace, files).encode())
    notes.extend(f"Removed the older {path}: it showed an earlier run" for path in stale)
    return written, notes


def set_problems(index: Path) -> list[str]:
    """Why the set that JSON ``index`` heads is not whole (empty: it is): a file it names missing or
    different, or a file of a trace set's kind beside it that it does not name."""
    index = Path(index)
    try:
        files = json.loads(index.read_bytes()).get("files")
    except (OSError, ValueError, AttributeError) as error:
        return [f"{index}: not readable as a trace ({error})"]
    if not isinstance(files, dict):
        return [f"{index}: names no files (saved before schema version 6)"]
    problems = []
    for name, expected in files.items():
        partner = index.parent / name
        try:
            found = digest(partner.read_bytes())
        except OSError:
            problems.append(f"{partner}: missing")
            continue
        if found != expected:
            problems.append(f"{partner}: not the file {index.name} was saved with")
    for suffix, _ in TRACE_SET:
        partner = index.with_suffix(suffix)
        if partner.name not in files and os.path.lexists(partner):
            problems.append(f"{partner}: not part of the set {index.name} heads")
    return problems
