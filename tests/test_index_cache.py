"""The formula index cache (traces/below/cache.py) is untrusted input: every way of damaging it is rebuilt.

Never a hang, a crash, a traceback, or a trace that says something else; a
cache folder that others can write to (a shared XDG_CACHE_HOME) is not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal

import pytest

from traces.below import cache, formulas


@pytest.fixture
def folder(tmp_path):
    private = tmp_path / "cache"
    private.mkdir(mode=0o700)
    return private


@pytest.fixture(autouse=True)
def never_hang():
    """A FIFO read without O_NONBLOCK would wait forever: fail after 20 s instead."""
    def stuck(*_):
        raise TimeoutError("the cache read hung")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def plant(path, data) -> None:
    """A cache file as write_cache writes one (so only what is inside it is wrong)."""
    content = data if isinstance(data, bytes) else json.dumps(data).encode()
    path.write_bytes(b"sha256 " + hashlib.sha256(content).hexdigest().encode() + b"\n" + content)
    path.chmod(0o600)


def changed(index_data, change):
    data = json.loads(json.dumps(index_data))
    change(data)
    return data


def assert_rebuilt(folder, built, capsys):
    """Load the index from ``folder``: it was built once, replaced in the cache, and printed nothing."""
    index = cache.load_index(folder)
    assert len(built) == 1, "the damaged cache was used"
    assert index.origin == f"built and cached in {cache.cache_file(folder)}"
    assert formulas.node_derivative("MulBackward0", index).formulas[0].formula.startswith("mul_tensor_backward")
    assert cache.read_cache(cache.cache_file(folder)) is not None
    assert capsys.readouterr() == ("", "")
    return index


def test_a_whole_planted_cache_is_read(folder, built, index_data):
    plant(cache.cache_file(folder), index_data)
    assert cache.load_index(folder).origin.startswith("read from ") and built == []


def set_formula(data, text):
    data["nodes"]["MulBackward0"]["formulas"][0]["formula"] = text


DAMAGES = {
    "an empty nodes": lambda data: data.update(nodes={}),
    "a node that is a list": lambda data: data["nodes"].update(MulBackward0=[1, 2]),
    "a formula that is a number": lambda data: set_formula(data, 7),
    "an escape code in a formula": lambda data: set_formula(data, "\x1b[2J\x1b]0;owned\x07grad"),
    "a missing key": lambda data: data["functions"]["add.Tensor"].pop("kernels"),
    "a kernel of the wrong shape": lambda data: data["functions"]["add.Tensor"]["kernels"].update(CPU="add"),
    "a line that is text": lambda data: data["cpp_nodes"]["AccumulateGrad"].update(line="12"),
    "another torch": lambda data: data.update(torch_version="0.1"),
    "another format": lambda data: data.update(format=cache.INDEX_FORMAT + 1),
    "an extra key": lambda data: data.update(extra=1),
    "a list at the top": None,
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_cache_with_a_damaged_entry_is_rebuilt(folder, built, index_data, damage, capsys):
    data = [] if DAMAGES[damage] is None else changed(index_data, DAMAGES[damage])
    plant(cache.cache_file(folder), data)
    assert_rebuilt(folder, built, capsys)


def test_deeply_nested_json_is_rebuilt_not_a_recursion_error(folder, built, capsys):
    plant(cache.cache_file(folder), b"[" * 200_000 + b"]" * 200_000)
    assert_rebuilt(folder, built, capsys)


def test_a_changed_byte_no_longer_matches_the_sha256_line(folder, built, index_data, capsys):
    path = cache.cache_file(folder)
    plant(path, index_data)
    content = path.read_bytes()
    path.write_bytes(content.replace(b"mul_tensor_backward", b"mul_tensor_backwarx", 1))
    assert_rebuilt(folder, built, capsys)
    path.write_bytes(content.split(b"\n", 1)[1])  # no sha256 line: a cache of before
    built.clear()
    assert_rebuilt(folder, built, capsys)


def test_a_fifo_in_its_place_is_rebuilt_without_waiting(folder, built, capsys):
    os.mkfifo(cache.cache_file(folder))
    assert_rebuilt(folder, built, capsys)


def test_a_link_to_dev_zero_is_rebuilt_not_read(folder, built, capsys):
    cache.cache_file(folder).symlink_to("/dev/zero")
    assert_rebuilt(folder, built, capsys)
    assert not cache.cache_file(folder).is_symlink()


def test_a_file_over_the_size_limit_is_not_read(folder, built, index_data, capsys, monkeypatch):
    plant(cache.cache_file(folder), index_data)
    monkeypatch.setattr(cache, "CACHE_LIMIT", 1000)
    assert cache.read_cache(cache.cache_file(folder)) is None
    monkeypatch.setattr(cache, "CACHE_LIMIT", 64 * 1024 * 1024)
    assert cache.read_cache(cache.cache_file(folder)) is not None


def test_a_cache_file_others_can_write_is_rebuilt(folder, built, index_data, capsys):
    path = cache.cache_file(folder)
    plant(path, index_data)
    path.chmod(0o666)
    assert_rebuilt(folder, built, capsys)
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mode", [0o777, 0o775])
def test_a_cache_folder_others_can_write_is_not_used(tmp_path, built, index_data, mode):
    """A shared XDG_CACHE_HOME: a planted cache there is never read, and nothing is written there."""
    shared = tmp_path / "shared"
    shared.mkdir()
    plant(cache.cache_file(shared), changed(index_data, DAMAGES["an empty nodes"]))
    shared.chmod(mode)
    index = cache.load_index(shared)
    assert len(built) == 1 and "MulBackward0" in index.nodes
    assert index.origin == f"built in memory; not cached: {shared} is not this user's alone (owner or others can write to it)"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a folder to another user")
def test_a_cache_folder_of_another_user_is_not_used(tmp_path, built, index_data):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    plant(cache.cache_file(theirs), index_data)
    os.chown(cache.cache_file(theirs), 4321, 4321)
    os.chown(theirs, 4321, 4321)
    index = cache.load_index(theirs)
    assert len(built) == 1 and index.origin.startswith("built in memory; not cached: ")


def test_the_cache_folder_it_makes_is_private(tmp_path, built):
    cache.load_index(tmp_path / "new" / "cache")
    assert (tmp_path / "new" / "cache").stat().st_mode & 0o777 == 0o700
