"""A trace is saved as a set (JSON, Mermaid, HTML, SVG) that a reader finds whole after any fault.

The JSON names its set's files with their hashes and takes its name last; until
then there is no JSON. Faults are injected where they hurt: an interruption at
each step that changes a name, a folder in the way, and kill -9 at random moments.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import traces
from conftest import ROOT, recorded_traces
from traces.basics import saving
from traces.render.files import TRACE_SET, save_trace, set_problems
from traces.basics.saving import WriteFailed, write_set


def small_trace(value: float):
    with traces.record(name="model") as trace:
        w = torch.tensor(value, requires_grad=True)
        (w * w).backward()
    return trace


def contents(folder: Path) -> dict[str, bytes]:
    """The files a user sees in ``folder`` (not the hidden ones a save works with)."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file() and path.name[0] != "."}


@pytest.fixture(scope="module")
def two_traces():
    return small_trace(2.0), small_trace(3.0)


def test_the_json_names_each_file_of_its_set_with_its_hash(two_traces, tmp_path):
    written, _ = save_trace(two_traces[0], tmp_path)
    assert written[0] == tmp_path / "model.json"
    index = tmp_path / "model.json"
    assert set_problems(index) == []
    (tmp_path / "model.mmd").write_text("flowchart TD\n")  # a picture of another run
    assert set_problems(index) == [f"{tmp_path / 'model.mmd'}: not the file model.json was saved with"]
    (tmp_path / "model.mmd").unlink()
    assert set_problems(index) == [f"{tmp_path / 'model.mmd'}: missing"]


@pytest.mark.parametrize("name", recorded_traces())
def test_every_recorded_set_is_whole(name):
    assert set_problems(ROOT / "traces" / "recorded" / f"{name}.json") == []


@pytest.mark.parametrize("operation", ["replace", "unlink"])
def test_an_interruption_at_each_step_keeps_the_earlier_set_whole(two_traces, tmp_path, monkeypatch, operation):
    """Ctrl-C at the k-th rename or removal of a save: the earlier set is put back, byte for byte,
    or (once the new JSON is in place, while the save clears up) the new set is whole."""
    save_trace(two_traces[0], tmp_path)
    earlier = contents(tmp_path)
    real = getattr(os, operation)
    steps = 0
    while True:
        calls = 0

        def interrupt_at_step(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == steps + 1:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(os, operation, interrupt_at_step)
        try:
            save_trace(two_traces[1], tmp_path)
        except KeyboardInterrupt:
            monkeypatch.setattr(os, operation, real)
            now = contents(tmp_path)
            assert now == earlier or set_problems(tmp_path / "model.json") == [], f"interrupted at {operation} {steps + 1}"
            save_trace(two_traces[0], tmp_path)
            assert contents(tmp_path) == earlier
            steps += 1
            continue
        monkeypatch.setattr(os, operation, real)
        break
    assert steps >= (len(TRACE_SET) + 1 if operation == "replace" else 1)  # every commit, or the old index's removal
    assert set_problems(tmp_path / "model.json") == []
    assert contents(tmp_path) != earlier  # the save that ran to the end replaced the set


def test_an_interruption_that_also_stops_the_put_back_leaves_no_mixed_set(two_traces, tmp_path, monkeypatch):
    """Every rename from the k-th on fails: what is left is the old set, or no JSON at all."""
    save_trace(two_traces[0], tmp_path)
    real = os.replace
    for step in range(len(TRACE_SET) + 1):
        calls = 0

        def interrupt_from_step(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls > step:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(os, "replace", interrupt_from_step)
        with pytest.raises(KeyboardInterrupt):
            save_trace(two_traces[1], tmp_path)
        monkeypatch.setattr(os, "replace", real)
        index = tmp_path / "model.json"
        assert not index.exists() or set_problems(index) == [], step
        save_trace(two_traces[0], tmp_path)  # whole again, and the leftovers cleared
        assert set_problems(index) == []
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


@pytest.mark.parametrize("suffix", [".json", ".html"])
def test_a_folder_in_the_way_changes_nothing_and_says_so(two_traces, tmp_path, suffix):
    save_trace(two_traces[0], tmp_path)
    (tmp_path / f"model{suffix}").unlink()
    (tmp_path / f"model{suffix}").mkdir()
    earlier = {name: data for name, data in contents(tmp_path).items() if name != f"model{suffix}"}
    with pytest.raises(WriteFailed) as failed:
        save_trace(two_traces[1], tmp_path)
    assert str(failed.value) == f"could not write {tmp_path / ('model' + suffix)}: a folder is in the way (nothing was changed)"
    assert {name: data for name, data in contents(tmp_path).items() if name != f"model{suffix}"} == earlier
    assert (tmp_path / f"model{suffix}").is_dir()


def test_a_failed_commit_puts_every_earlier_file_back(two_traces, tmp_path, monkeypatch):
    save_trace(two_traces[0], tmp_path)
    earlier = contents(tmp_path)
    real = os.replace
    calls = 0

    def full_disk_at_the_second(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk_at_the_second)
    with pytest.raises(WriteFailed, match=r": No space left on device \(the earlier set is unchanged\); free some space"):
        save_trace(two_traces[1], tmp_path)
    monkeypatch.setattr(os, "replace", real)
    assert contents(tmp_path) == earlier


# The child: this module's file loaded on its own (no torch, so it starts in milliseconds),
# saving two different sets over each other as fast as it can.
WRITER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("saving", sys.argv[1])
saving = importlib.util.module_from_spec(spec)
spec.loader.exec_module(saving)
from pathlib import Path
folder = Path(sys.argv[2])
print("ready", flush=True)
n = 0
while True:
    n += 1
    others = {folder / f"t{suffix}": (suffix * (1000 + 500 * (n % 2))).encode() for suffix in (".mmd", ".html", ".svg")}
    if n % 3 == 0:
        others[folder / "t.svg"] = None  # a save without Graphviz removes the older picture
    saving.write_set(folder / "t.json", others, lambda names: repr(sorted(names.items())).encode())
"""


def whole(index: Path) -> list[str]:
    """set_problems for the child's index, which is not a trace's JSON but names the same hashes."""
    import ast

    named = dict(ast.literal_eval(index.read_text()))
    problems = [
        name
        for name, digest in named.items()
        if not (index.parent / name).is_file() or saving.digest((index.parent / name).read_bytes()) != digest
    ]
    problems += [suffix for suffix, _ in TRACE_SET if f"t{suffix}" not in named and (index.parent / f"t{suffix}").exists()]
    return problems


def test_kill_9_at_random_moments_never_leaves_a_mixed_set(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    chance = random.Random(19)
    for attempt in range(30):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, saving.__file__, str(folder)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout.readline() == "ready\n"
        time.sleep(chance.uniform(0, 0.03))
        child.kill()
        child.wait()
        child.stdout.close()
        index = folder / "t.json"
        if index.exists():
            assert whole(index) == [], f"attempt {attempt}: a mixed set"
    last = {folder / "t.mmd": b"m", folder / "t.html": None, folder / "t.svg": None}
    write_set(folder / "t.json", last, lambda names: repr(sorted(names.items())).encode())
    assert sorted(os.listdir(folder)) == ["t.json", "t.mmd"]  # leftovers of killed saves (and the old svg) removed


def test_saving_needs_no_torch():
    """So that the kill -9 writer above (and any other saver) starts in milliseconds."""
    spec = importlib.util.spec_from_file_location("saving", saving.__file__)
    found = subprocess.run(
        [sys.executable, "-c", f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('s', {saving.__file__!r}); "
         "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); print('torch' in sys.modules)"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert spec is not None and found.stdout == "False\n", found.stderr


def test_a_scenario_with_a_folder_in_the_way_says_nothing_was_changed(tmp_path, capsys):
    from conftest import scenario_module

    assert scenario_module("backward").main(["--save-trace", str(tmp_path)]) == 0
    earlier = contents(tmp_path)
    (tmp_path / "backward.mmd").unlink()
    (tmp_path / "backward.mmd").mkdir()
    capsys.readouterr()
    assert scenario_module("backward").main(["--save-trace", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"scenarios/backward.py: error: could not write {tmp_path / 'backward.mmd'}: "
        "a folder is in the way (nothing was changed)\n"
    )
    assert contents(tmp_path) == {name: data for name, data in earlier.items() if name != "backward.mmd"}
