"""Saving files so that nothing is ever half-written or lost.

Every file is first written to a hidden temporary file beside it
(``.model.pth.k3j_x9a2.partial``), flushed to the disk, and then moved over the
real name with ``os.replace``, in one step. A save that fails (a full disk) or
is interrupted (Ctrl-C) leaves the earlier file as it was and removes its
temporary file. A process killed outright (kill -9, a power cut) cannot remove
it; the next save of the same file does. To tell such a leftover from the
temporary file of a run that is writing right now, a writer keeps its
temporary file locked while it works, and only unlocked ones are removed.

Several files that belong together are saved as a set (``write_set``): one of
them is the set's index, which names every other file with the sha256 of its
bytes and is written last. While the others are replaced the index is absent,
so whatever stops a save, whoever opens the folder finds either an index whose
files all match it (the old set, or the new one) or no index at all (a save was
killed outright; the next one replaces what it left). A save that fails or is
interrupted while it can still act (a full disk, a folder in the way, Ctrl-C)
puts the whole earlier set back.

This module needs nothing of torch or of the rest of the package: it saves bytes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

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


def write_failure(path: Path, error: OSError, earlier_of: Path | None = None) -> WriteFailed:
    """The one-line explanation of a failed save of ``path``, as an exception to raise
    (``earlier_of``: the index of the set ``path`` belongs to)."""
    reason = error.strerror or str(error) or type(error).__name__
    advice = ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "; free some space and run again"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "; choose a place you can write to"
    if earlier_of is not None:
        earlier = "the earlier set is unchanged" if earlier_of.exists() else "nothing was written"
    else:
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


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def backup_name(path: Path) -> Path:
    """A hidden name beside ``path`` that ``remove_leftovers(path)`` takes for a leftover of a killed save."""
    return path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"


def keep_a_copy(path: Path) -> Path | None:
    """A second name for ``path``'s current file (a hard link, else a copy), to put back; None if there is none."""
    if not os.path.lexists(path):
        return None
    backup = backup_name(path)
    try:
        os.link(path, backup, follow_symlinks=False)
    except OSError:  # a file system without hard links
        shutil.copy2(path, backup, follow_symlinks=False)
    return backup


def write_set(index: Path, others: Mapping[Path, bytes | None], make_index: Callable[[dict[str, str]], bytes]) -> list[Path]:
    """Write a set of files beside one another: the files ``others`` (None: remove that file), then ``index``,
    whose bytes ``make_index`` makes from ``{file name: sha256}`` of the others written.

    A reader sees the old set or the new one: the old index is removed before any
    other file changes, and the new one takes its name last. On an error or an
    interruption, the earlier files are put back (index last) before it is raised.
    Returns the files written, the index first.
    """
    index = Path(index)
    others = {Path(path): content for path, content in others.items()}
    written = {path: content for path, content in others.items() if content is not None}
    for path in [index, *written]:
        if path.is_dir():  # checked before anything changes: os.replace would fail halfway
            raise WriteFailed(f"could not write {path}: a folder is in the way (nothing was changed)")
    for path in others:
        remove_leftovers(path)  # what killed saves left, also beside a file this save removes
    pending: dict[Path, PendingFile] = {}
    backups: dict[Path, Path | None] = {}
    path = index  # the file being worked on, for the message
    try:
        for path, content in written.items():
            pending[path] = PendingFile(path)
            pending[path].file.write(content)
            pending[path].finish()
        path = index
        pending[index] = PendingFile(index)
        pending[index].file.write(make_index({file.name: digest(content) for file, content in written.items()}))
        pending[index].finish()
        for path in [*others, index]:
            backups[path] = keep_a_copy(path)
        path = index
        if backups[index] is not None:
            os.unlink(index)  # from here until the new index is in place, there is no set
        for path in others:
            if path in pending:
                pending[path].commit()
            elif backups[path] is not None:
                os.unlink(path)
        path = index
        pending[index].commit()
    except BaseException as error:
        put_back(backups, index)
        if isinstance(error, OSError) and not isinstance(error, WriteFailed):
            raise write_failure(Path(path), error, earlier_of=index) from error
        raise
    finally:
        for file in pending.values():
            file.discard()
            file.file.close()
        for backup in backups.values():
            if backup is not None:
                Path(backup).unlink(missing_ok=True)
    return [index, *written]


def put_back(backups: Mapping[Path, Path | None], index: Path) -> None:
    """Undo a set's save that stopped halfway: each file as it was, the index last (so never a mixed set)."""
    for path, backup in [*((p, b) for p, b in backups.items() if p != index), (index, backups.get(index))]:
        if path not in backups:
            continue
        try:
            if backup is not None:
                os.replace(backup, path)
            elif path.is_file():
                path.unlink()  # it was not there before
        except OSError:
            pass  # best effort; without its index, what is left is no set
