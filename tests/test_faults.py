"""Faults a user can cause or meet, each ending in one line, with nothing lost or left behind.

Bad arguments: status 2, before any work. A failure during the run: status 1.
Ctrl-C: status 130. A save keeps the earlier file whole, leaves no temporary
file, and removes those that killed runs left. Where it matters, the fault is
real: a folder this process cannot write, a tiny disk, a file where a folder
should be, a SIGINT or SIGKILL sent to a real process, two processes at once.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scenarios.quickstart as quickstart_module
from conftest import ROOT, scenario_module, scenario_names
from faults import DISK_FULL, fail_mid_file, files_in, small_disk, unwritable
from scenarios._fashion import FILES, STANDIN_FOLDER, NeuralNetwork
from scenarios._runner import run_scenario
from scenarios.quickstart import quickstart, save_model
from traces.render.picture import dot_available

INTERRUPTED_LINE = "interrupted (Ctrl-C); no file was left half-written"


def quickstart_argv(data: Path, model: Path, *more: str) -> list[str]:
    return ["--epochs", "1", "--limit", "64", "--data", str(data), "--model", str(model), *more]


def start_script(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


# --- A save that fails keeps the earlier file, and leaves nothing behind --------------


def test_a_full_disk_while_saving_the_model_is_one_line_and_keeps_the_earlier_model(fashion_data, tmp_path, capsys):
    with small_disk(tmp_path / "disk", "1m") as disk:  # model.pth needs 2.6 MB
        model = disk / "model.pth"
        model.write_bytes(b"the earlier model")
        status = quickstart_module.main(quickstart_argv(fashion_data, model))
        assert status == 1
        assert capsys.readouterr().err == (
            f"scenarios/quickstart.py: error: could not write {model}: No space left on device "
            "(the earlier file is unchanged); free some space and run again\n"
        )
        assert model.read_bytes() == b"the earlier model"
        assert files_in(disk) == ["model.pth"]


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
def test_a_real_process_whose_write_fails_mid_file_keeps_the_earlier_trace_set(tmp_path):
    """The kernel itself refuses to write past 4 kB (RLIMIT_FSIZE), partway through backward.html (the largest)."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

    earlier = {f"backward{suffix}": f"earlier {suffix}" for suffix in (".json", ".mmd", ".svg")}
    for name, text in earlier.items():
        (tmp_path / name).write_text(text)
    process = start_script("scenarios/backward.py", "--save-trace", str(tmp_path), preexec_fn=limit_file_size)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert err.splitlines() == [
        f"scenarios/backward.py: error: could not write {tmp_path / 'backward.html'}: File too large "
        "(the earlier set is unchanged)"
    ]
    assert "w.grad = 5.0" in out  # the lesson ran; only its trace could not be saved
    assert {name: (tmp_path / name).read_text() for name in earlier} == earlier
    assert files_in(tmp_path) == sorted(earlier)


def test_a_trace_set_is_written_all_or_nothing(tmp_path, capsys):
    """The last file of the set fails halfway: the earlier set stays as it was, whole."""
    last = ".svg" if dot_available() else ".mmd"
    earlier = {f"backward{suffix}": f"earlier {suffix}" for suffix in (".json", ".mmd", ".svg")}
    for name, text in earlier.items():
        (tmp_path / name).write_text(text)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fail_mid_file(monkeypatch, room=100, error=DISK_FULL, name_ends=last)
        status = scenario_module("backward").main(["--save-trace", str(tmp_path)])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"scenarios/backward.py: error: could not write {tmp_path / ('backward' + last)}: ")
    assert {name: (tmp_path / name).read_text() for name in earlier} == earlier
    assert files_in(tmp_path) == sorted(earlier)


def test_without_dot_an_older_picture_is_removed_not_left_beside_a_newer_trace(tmp_path, monkeypatch, capsys):
    (tmp_path / "backward.svg").write_text("a picture of an earlier run")
    monkeypatch.setattr("traces.render.picture.shutil.which", lambda name: None)
    assert scenario_module("backward").main(["--save-trace", str(tmp_path)]) == 0
    assert files_in(tmp_path) == ["backward.html", "backward.json", "backward.mmd"]
    assert f"Removed the older {tmp_path / 'backward.svg'}: it showed an earlier run" in capsys.readouterr().out


# A process that starts saving model.pth, says which temporary file it writes, and waits to be killed.
STARTS_A_SAVE = """
import sys, time
from pathlib import Path
from traces.basics.saving import PendingFile
pending = PendingFile(Path(sys.argv[1]))
pending.file.write(b"half a model")
pending.file.flush()
print(pending.temporary, flush=True)
time.sleep(120)
"""


def test_leftovers_of_killed_saves_are_removed_but_not_a_running_saves_file(tmp_path):
    from traces.basics.saving import PendingFile

    model = tmp_path / "model.pth"
    killed = start_script("-c", STARTS_A_SAVE, str(model))
    try:
        left_by_killed = Path(killed.stdout.readline().strip())
        running = PendingFile(model)  # a save in progress, as another run's would be
    finally:
        killed.kill()  # SIGKILL: no clean-up can run
        killed.wait()
    running.file.write(b"half a model")
    try:
        not_ours = [".model.pth.backup", ".other.pth.abcd1234.partial", "model.pth.abcd1234.partial"]
        for name in not_ours:
            (tmp_path / name).write_text("someone else's")
        still_saving = Path(running.temporary)
        assert left_by_killed.read_bytes() == b"half a model" and still_saving.is_file()

        save_model(NeuralNetwork(), model).close()

        assert not left_by_killed.exists()
        assert still_saving.is_file()  # the other save goes on
        assert files_in(tmp_path) == sorted(["model.pth", still_saving.name, *not_ours])
    finally:
        running.discard()


# --- Bad arguments: one line, status 2, before any work ----------------------------


def test_an_unwritable_model_folder_is_refused_before_training(fashion_data, tmp_path, capsys):
    with unwritable(tmp_path / "read-only") as folder:
        with pytest.raises(SystemExit) as exit_info:
            quickstart_module.main(quickstart_argv(fashion_data, folder / "model.pth"))
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing was trained
    assert err == (
        f"scenarios/quickstart.py: error: argument --model: cannot write into '{folder}': "
        "permission denied (see --help)\n"
    )


@pytest.mark.parametrize("below", [False, True], ids=["the folder", "a folder to make in it"])
def test_an_unwritable_trace_folder_is_refused_before_the_run(tmp_path, capsys, below):
    with unwritable(tmp_path / "read-only") as folder:
        with pytest.raises(SystemExit) as exit_info:
            scenario_module("backward").main(["--save-trace", str(folder / "traces" if below else folder)])
        assert files_in(folder) == []
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"scenarios/backward.py: error: argument --save-trace: cannot write into '{folder}': "
        "permission denied (see --help)\n"
    )


def test_an_unwritable_data_folder_is_refused_unless_the_data_is_already_there(fashion_data, tmp_path, capsys):
    from scenarios._fashion import data_folder

    with unwritable(tmp_path / "empty") as empty:
        with pytest.raises(SystemExit) as exit_info:
            quickstart_module.main(["--data", str(empty), "--model", str(tmp_path / "model.pth")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"scenarios/quickstart.py: error: argument --data: cannot write into '{empty}': permission denied "
        "(the data has to be written there first) (see --help)\n"
    )
    # Data that is all there can be read from a folder that cannot be written.
    complete = tmp_path / "complete"
    raw = complete / STANDIN_FOLDER / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        (raw / name).symlink_to(fashion_data / STANDIN_FOLDER / "FashionMNIST" / "raw" / name)
    with unwritable(complete):
        assert data_folder(str(complete)) == complete


@pytest.mark.parametrize(
    "option, where",
    [("--model", "a-file/model.pth"), ("--save-trace", "a-file/traces"), ("--data", "a-file/data")],
)
def test_a_file_where_a_folder_should_be_is_refused(tmp_path, capsys, option, where):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        quickstart_module.main([option, str(tmp_path / where)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"scenarios/quickstart.py: error: argument {option}: '{a_file}' is a file, not a folder (see --help)\n"
    )
    assert files_in(tmp_path) == ["a-file"] and a_file.read_text() == "keep me"


@pytest.mark.parametrize(
    "option, message",
    [
        ("--save-trace", "the path is empty; give a folder"),
        ("--data", "the path is empty; give a folder"),
        ("--model", "the path is empty; give a file name"),
    ],
)
def test_an_empty_path_is_refused_rather_than_meaning_here(option, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        quickstart_module.main([option, ""])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"scenarios/quickstart.py: error: argument {option}: {message} (see --help)\n"


def test_the_largest_seed_torch_takes_is_accepted(capsys):
    assert scenario_module("backward").main(["--seed", str(2**64 - 1)]) == 0
    assert capsys.readouterr().err == ""


# --- Ctrl-C: one line, status 130, nothing left behind ------------------------------


def test_ctrl_c_during_a_run_is_one_line_and_status_130(fashion_data, tmp_path):
    model = tmp_path / "model.pth"
    model.write_bytes(b"the earlier model")
    process = start_script(
        "scenarios/quickstart.py", "--epochs", "1000", "--limit", "1000",
        "--data", str(fashion_data), "--model", str(model),
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith("Epoch 2"):  # training
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.splitlines() == [f"scenarios/quickstart.py: {INTERRUPTED_LINE}"]
    assert "Traceback" not in out
    assert model.read_bytes() == b"the earlier model"
    assert files_in(tmp_path) == ["model.pth"]


def test_ctrl_c_while_a_scenario_is_still_starting_is_one_line_and_status_130():
    # -X importtime writes a line as each import ends: Ctrl-C goes in just after scenarios._ctrl_c
    # is imported, while torch loads (however slowly this machine starts Python).
    process = start_script("-X", "importtime", "scenarios/backward.py", "--trace")
    for line in process.stderr:
        if line.rstrip().endswith("scenarios._ctrl_c"):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert (process.returncode, out) == (130, "")
    assert not [line for line in err.splitlines() if line.endswith("| torch")]  # torch never finished loading
    said = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert said == ["scenarios/backward.py: interrupted (Ctrl-C) while starting; nothing was done"]


@pytest.mark.parametrize("name", ["_record", *scenario_names()])
def test_every_scenario_takes_over_ctrl_c_before_anything_else(name):
    """Its first import is scenarios._ctrl_c, so that Ctrl-C during the imports after it is one line."""
    module = ast.parse((ROOT / "scenarios" / f"{name}.py").read_text())
    imports = [node for node in module.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert ast.unparse(imports[0]) == "from __future__ import annotations"
    assert ast.unparse(imports[1]) == "import scenarios._ctrl_c"


def test_imported_by_others_ctrl_c_is_left_alone():
    import scenarios._ctrl_c

    assert scenarios._ctrl_c.script_name() is None  # pytest is the program here
    assert signal.getsignal(signal.SIGINT) is not scenarios._ctrl_c.exit_at_once


def test_ctrl_c_while_tracing_removes_every_hook_and_mode(capsys):
    from torch.nn.modules import module as torch_module

    profile_before = sys.getprofile()

    def press_ctrl_c(gradient):
        raise KeyboardInterrupt

    def lesson(device, tracer):
        layer = torch.nn.Linear(2, 1)
        y = layer(torch.ones(1, 2)).sum()
        y.register_hook(press_ctrl_c)  # runs inside backward, with every tracer hook in place
        with tracer.backward_of({"y": y}, names=dict(layer.named_parameters())):
            y.backward()

    status = run_scenario("some_lesson", lesson, narrate=lambda facts: [], argv=["--trace"])
    assert status == 130
    assert capsys.readouterr().err == f"scenarios/some_lesson.py: {INTERRUPTED_LINE}\n"
    assert sys.getprofile() is profile_before  # the source view's hook
    assert torch._C._len_torch_dispatch_stack() == 0  # the ops view's TorchDispatchMode
    assert not torch_module._global_forward_hooks  # the module recorder's hook
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None:
        assert monitoring.get_tool(monitoring.PROFILER_ID) is None


# --- Two runs at once ---------------------------------------------------------------


def test_a_run_reloads_the_checkpoint_it_saved_though_another_run_replaces_it(fashion_data, tmp_path, monkeypatch):
    model_path = tmp_path / "model.pth"
    another_model = NeuralNetwork()

    def save_then_another_run_saves_too(model, path):
        saved = save_model(model, path)
        save_model(another_model, path).close()  # what a second quickstart does at that moment
        return saved

    monkeypatch.setattr(quickstart_module, "save_model", save_then_another_run_saves_too)
    with pytest.MonkeyPatch.context() as quiet:
        quiet.setattr("sys.stdout", open(os.devnull, "w"))
        facts = quickstart(epochs=1, limit=64, data=fashion_data, model_path=model_path)
    assert facts.reloaded_parameters_identical is True
    assert facts.predicted == facts.predicted_before_saving
    on_disk = torch.load(model_path, weights_only=True)  # the other run's, saved last
    assert all(torch.equal(on_disk[name], value) for name, value in another_model.state_dict().items())


# Saves its own model to the same path again and again, as quickstart.save_model does (without
# importing torchvision, which that module needs), each time reloading through the file it
# saved; prints how many reloads gave back another model than its own.
SAVES_AND_RELOADS = """
import sys
import torch
from scenarios._fashion import NeuralNetwork
from traces.basics.saving import replacing
torch.manual_seed(int(sys.argv[2]))
state = NeuralNetwork().state_dict()
print("ready", flush=True)
sys.stdin.readline()  # both start together
wrong = 0
for _ in range(8):
    with replacing(sys.argv[1], keep_open=True) as saved:
        torch.save(state, saved)
    with saved:
        saved.seek(0)
        reloaded = torch.load(saved, weights_only=True)
    wrong += not all(torch.equal(state[name], reloaded[name]) for name in state)
print("wrong", wrong, flush=True)
"""


def test_two_processes_saving_the_same_model_at_once_each_reload_their_own(tmp_path):
    model = tmp_path / "model.pth"
    runs = [start_script("-c", SAVES_AND_RELOADS, str(model), str(seed), stdin=subprocess.PIPE) for seed in (1, 2)]
    for run in runs:
        assert run.stdout.readline() == "ready\n"
    for run in runs:
        run.stdin.write("go\n")
        run.stdin.flush()
    results = [run.communicate(timeout=120) for run in runs]
    assert [out for out, _ in results] == ["wrong 0\n", "wrong 0\n"], [err for _, err in results]
    assert files_in(tmp_path) == ["model.pth"]  # no temporary file
    assert set(torch.load(model, weights_only=True)) == set(NeuralNetwork().state_dict())


# --- scenarios/_record.py and benchmarks/run.py ------------------------------------


def test_record_help_prints_help_and_records_nothing(monkeypatch, capsys):
    from scenarios import _record

    def no_recording(*args, **kwargs):
        raise AssertionError("--help started a recording")

    monkeypatch.setattr(_record.subprocess, "run", no_recording)
    with pytest.raises(SystemExit) as exit_info:
        _record.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: scenarios/_record.py [-h] [--into DIR] [NAME ...]")
    assert "--into DIR" in out and "scenarios to record (default: all of them)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["backwards"], "argument NAME: 'backwards' is not a scenario (scenarios: backward, "),
        (["--into", ""], "argument --into: the path is empty; give a folder"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_record_refuses_bad_arguments_in_one_line(argv, message, capsys):
    from scenarios import _record

    with pytest.raises(SystemExit) as exit_info:
        _record.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"scenarios/_record.py: error: {message}")


def load_benchmarks():
    spec = importlib.util.spec_from_file_location("benchmarks_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--runs", "0"], "argument --runs: 0 is too small; it must be 1 or more"),
        (["--runs", "-1"], "argument --runs: -1 is too small; it must be 1 or more"),
        (["--output", ""], "argument --output: the path is empty; give a file name"),
        (["--output", "{a_file}/results.json"], "argument --output: '{a_file}' is a file, not a folder"),
        (
            ["--output", "{read_only}/results.json"],
            "argument --output: cannot write into '{read_only}': permission denied",
        ),
    ],
)
def test_benchmark_options_are_checked_before_anything_runs(argv, message, tmp_path, monkeypatch, capsys):
    benchmarks = load_benchmarks()

    def measure(*args, **kwargs):
        raise AssertionError("a measurement started")

    monkeypatch.setattr(benchmarks, "machine", measure)
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    with unwritable(tmp_path / "read-only") as read_only:
        places = {"a_file": a_file, "read_only": read_only}
        with pytest.raises(SystemExit) as exit_info:
            benchmarks.run([arg.format(**places) for arg in argv])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"benchmarks/run.py: error: {message.format(**places)} (see --help)\n"


# --- Saved traces name no path of this machine -------------------------------------


def json_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def test_a_saved_trace_names_no_path_of_this_machine_and_the_terminal_keeps_clickable_ones(tmp_path, capsys):
    from traces.basics.places import shown_path

    assert scenario_module("backward").main(["--trace", "--save-trace", str(tmp_path)]) == 0
    torch_folder = os.path.dirname(torch.__file__)
    # In the terminal, a path VSCode makes clickable: absolute, or relative to the current folder when inside it.
    assert f"{shown_path(os.path.join(torch_folder, 'autograd', '__init__.py'))}:" in capsys.readouterr().out
    saved = json.loads((tmp_path / "backward.json").read_text())
    paths = [entry["path"] for entry in saved["source"]]
    assert "torch/autograd/__init__.py" in paths
    assert all(path.startswith("torch/") for path in paths)
    text = (tmp_path / "backward.json").read_text()
    for machine_specific in (str(ROOT), torch_folder, os.path.expanduser("~") + os.sep, str(tmp_path)):
        assert machine_specific not in text


def test_portable_paths(tmp_path, monkeypatch):
    from traces.basics.paths import portable_path

    torch_folder = os.path.dirname(torch.__file__)
    assert portable_path(os.path.join(torch_folder, "autograd", "__init__.py")) == "torch/autograd/__init__.py"
    assert portable_path(os.__file__) == "os.py"  # the standard library
    assert portable_path(str(ROOT / "scenarios" / "backward.py")) == "scenarios/backward.py"
    monkeypatch.chdir(tmp_path)
    assert portable_path(str(tmp_path / "my_model.py")) == "my_model.py"  # a script of your own
    monkeypatch.setenv("HOME", str(tmp_path.parent))
    assert portable_path(str(tmp_path.parent / "elsewhere" / "net.py")) == "~/elsewhere/net.py"
    assert portable_path("/opt/elsewhere/net.py") == "net.py"  # outside home and here: no folder of this machine
    assert portable_path("<string>") == "<string>"
    assert portable_path("relative/model.pth") == "relative/model.pth"
