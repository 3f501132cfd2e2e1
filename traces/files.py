"""Saving files so that nothing is ever half-written or lost, and a trace as JSON, Mermaid, HTML and SVG.

Every file is first written to a hidden temporary file beside it
(``.model.pth.k3j_x9a2.partial``), flushed to the disk, and then moved over the
real name with ``os.replace``, in one step. A save that fails (a full disk) or
is interrupted (Ctrl-C) leaves the earlier file as it was and removes its
temporary file. A process killed outright (kill -9, a power cut) cannot remove
it; the next save of the same file does. To tell such a leftover from the
temporary file of a run that is writing right now, a writer keeps its
temporary file locked while it works, and only unlocked ones are removed.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from traces.trace import Trace

try:
    import fcntl
except ImportError:  # Windows, where an open file cannot be deleted: that is the lock
    fcntl = None

TEMPORARY_SUFFIX = ".partial"


class WriteFailed(OSError):
    """A file could not be written; the message names it, why, and that the earlier one is unchanged."""


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def is_temporary_of(name: str, path: Path) -> bool:
    """Whether ``name`` is a temporary file made for ``path`` (mkstemp's 8 random characters between)."""
    return re.fullmatch(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(TEMPORARY_SUFFIX)}", name) is not None


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temporary files that earlier, killed saves of ``path`` left beside it.

    Only this module's own kind of file for this ``path``, and only those no
    running process holds: a run saving the same file at this moment keeps its own.
    Returns what was removed. Best effort: a file it cannot remove stays.
    """
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        candidate = path.parent / name
        if is_temporary_of(name, path) and remove_if_abandoned(candidate):
            removed.append(candidate)
    return removed


def remove_if_abandoned(candidate: Path) -> bool:
    if fcntl is None:
        try:
            candidate.unlink()  # fails while the writing process has it open
            return True
        except OSError:
            return False
    try:
        handle = os.open(candidate, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer holds it
        if os.stat(candidate).st_ino != os.fstat(handle).st_ino:
            return False  # the name now means another file
        candidate.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(handle)


class PendingFile:
    """A new version of ``path`` being written; ``commit()`` puts it in place, ``discard()`` drops it.

    ``file`` is the temporary file, open for writing and reading. After
    ``commit()`` it is still open and is the file now at ``path``: reading it
    back gives exactly what was written, even if another process replaces
    ``path`` again in the meantime.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.path)
        self.temporary, self.file = locked_temporary(self.path)
        self.committed = False

    def finish(self) -> None:
        """Put what was written on the disk: a full disk shows here at the latest."""
        self.file.flush()
        os.fsync(self.file.fileno())  # before it takes the name: after a power cut, the old file or the new
        os.chmod(self.temporary, 0o666 & ~current_umask())  # mkstemp made it private; give the usual permissions

    def commit(self) -> None:
        """Give the finished file its name, in one step."""
        self.finish()
        if os.name == "nt":  # Windows renames no open file (so there, it is reopened by name)
            self.file.close()
            os.replace(self.temporary, self.path)
            self.file = open(self.path, "rb")
        else:
            os.replace(self.temporary, self.path)
        self.committed = True

    def discard(self) -> None:
        """Remove the temporary file, unless it was committed; safe to call more than once."""
        if self.committed:
            return
        if os.name == "nt":  # Windows deletes no open file
            self.file.close()
        Path(self.temporary).unlink(missing_ok=True)  # still locked here: no other run touches it
        self.file.close()


def locked_temporary(path: Path) -> tuple[str, BinaryIO]:
    """A new, locked temporary file beside ``path``: its name and the open file."""
    while True:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
        if fcntl is None:
            return name, open(handle, "w+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: clean-ups cannot lock it either, so they leave it
            return name, open(handle, "w+b")
        try:
            if os.stat(name).st_ino == os.fstat(handle).st_ino:
                return name, open(handle, "w+b")
        except FileNotFoundError:
            pass
        # Another run's clean-up took it for a leftover in the instant before the lock: make another.
        os.close(handle)


def write_failure(path: Path, error: OSError) -> WriteFailed:
    """The one-line explanation of a failed save of ``path``, as an exception to raise."""
    reason = error.strerror or str(error) or type(error).__name__
    advice = ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "; free some space and run again"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "; choose a place you can write to"
    earlier = "the earlier file is unchanged" if path.exists() else "nothing was written"
    failed = WriteFailed(f"could not write {path}: {reason} ({earlier}){advice}")
    failed.errno = error.errno
    return failed


@contextmanager
def replacing(path: Path, keep_open: bool = False) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` to write into; when the block ends, it replaces ``path``.

    A write that fails or is interrupted leaves an earlier ``path`` as it was,
    and no temporary file. An OSError becomes a WriteFailed that says which file.
    With ``keep_open``, the file stays open after the block (the caller closes
    it): reading it gives exactly what was written, whatever happens to ``path``.
    """
    path = Path(path)
    try:
        pending = PendingFile(path)
    except OSError as error:
        raise write_failure(path, error) from error
    try:
        yield pending.file
        pending.commit()
    except OSError as error:
        pending.discard()
        raise write_failure(path, error) from error
    finally:
        pending.discard()
        if not (keep_open and pending.committed):
            pending.file.close()


def write_atomically(path: Path, content: str | bytes) -> Path:
    with replacing(path) as file:
        file.write(content.encode() if isinstance(content, str) else content)
    return Path(path)


def write_all_or_nothing(contents: dict[Path, bytes]) -> list[Path]:
    """Write several files as one set: either every one is replaced, or none is.

    All are written to temporary files first, which is where a full disk or an
    interruption strikes; only when all are written does each take its name.
    """
    pending: list[PendingFile] = []
    path = None  # the file being worked on, for the message
    try:
        for path, content in contents.items():
            pending.append(PendingFile(path))
            pending[-1].file.write(content)
            pending[-1].finish()
        for file in pending:
            path = file.path
            file.commit()
    except OSError as error:
        raise write_failure(Path(path), error) from error
    finally:
        for file in pending:
            file.discard()
            file.file.close()
    return list(contents)


def save_trace(trace: Trace, directory: Path, depth: int | None = None) -> tuple[list[Path], list[str]]:
    """Write ``<scenario>.json``, ``.mmd``, ``.html`` and ``.svg`` into ``directory``, all or nothing.

    The pictures show a model by module, ``depth`` levels deep (see ``traces.drawing``).
    Returns the files written, and notes on what could not be written (the SVG
    when Graphviz is missing; an older SVG is then removed, as it showed another run).
    """
    from traces.json_file import trace_to_json
    from traces.mermaid import to_mermaid
    from traces.page import to_html
    from traces.picture import NO_DOT, dot_available, to_svg

    stem = Path(directory) / trace.scenario
    contents = {
        stem.with_suffix(".json"): trace_to_json(trace).encode(),
        stem.with_suffix(".mmd"): to_mermaid(trace, depth).encode(),
        stem.with_suffix(".html"): to_html(trace, Path(directory)).encode(),
    }
    notes = []
    if dot_available():
        svg = to_svg(trace, depth)
        contents[stem.with_suffix(".svg")] = svg.encode() if isinstance(svg, str) else svg
    else:
        notes.append(NO_DOT)
    written = write_all_or_nothing(contents)
    old_svg = stem.with_suffix(".svg")
    if old_svg not in contents and old_svg.is_file():
        old_svg.unlink()
        notes.append(f"Removed the older {old_svg}: it showed an earlier run")
    return written, notes
