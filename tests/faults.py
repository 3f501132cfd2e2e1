"""Real faults for the tests: folders that cannot be written, writes that fail mid-file, a small disk.

Each one is the fault itself where this machine allows it, and skips the test
(saying why) where it does not, rather than pretending.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import traces.basics.saving


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[Path]:
    """``folder`` made unwritable for this process, as a user meets it, and writable again afterwards.

    A normal user gets a folder without write permission (chmod 555). Root ignores
    permissions, so for root the folder is made immutable (chattr +i), which
    stops root too. Skips if neither works here.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if os.name != "posix":
        pytest.skip("needs a POSIX system")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    else:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: no folder is unwritable for root")
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root and chattr +i fails on this file system")
        undo = ["chattr", "-i", str(folder)]
    try:
        try:
            (folder / "probe").touch()
        except OSError:
            pass
        else:
            (folder / "probe").unlink()
            pytest.skip(f"{folder} is still writable here")
        yield folder
    finally:
        subprocess.run(undo, check=True)


class FailsMidFile:
    """A real temporary file that takes the first ``room`` bytes, then fails the way a full disk does."""

    def __init__(self, file, room: int, error: BaseException) -> None:
        self._file, self._room, self._error = file, room, error

    def write(self, data) -> int:
        if len(data) <= self._room:
            self._room -= len(data)
            return self._file.write(data)
        self._file.write(bytes(data[: self._room]))
        self._file.flush()  # the part that fitted is really on the disk
        self._room = 0
        raise type(self._error)(*self._error.args)  # a fresh one each time, as a real failure is

    def __getattr__(self, name):
        return getattr(self._file, name)


def fail_mid_file(monkeypatch, room: int, error: BaseException, name_ends: str = "") -> None:
    """Make the temporary file of every save whose target name ends with ``name_ends`` fail after ``room`` bytes.

    The failure is put at the lowest level the project writes through: the file
    object that traces.basics.saving opens for each save.
    """
    real = traces.basics.saving.locked_temporary

    def failing(path: Path):
        name, file = real(path)
        return (name, FailsMidFile(file, room, error)) if path.name.endswith(name_ends) else (name, file)

    monkeypatch.setattr(traces.basics.saving, "locked_temporary", failing)


DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A real, tiny file system (tmpfs) mounted at ``folder``; skips where mounting is not allowed."""
    if os.name != "posix" or shutil.which("mount") is None:
        pytest.skip("needs mount")
    folder.mkdir(parents=True, exist_ok=True)
    label = f"stepthrough-{uuid.uuid4().hex[:8]}"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", label, str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def files_in(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden ones included, sorted."""
    return sorted(os.listdir(folder))
