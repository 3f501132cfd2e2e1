"""The tracer never changes what a program computes, however many threads or processes it runs,
and ``python -m traces`` meets a broken script, an exit or Ctrl-C as ``python SCRIPT`` would."""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from conftest import ROOT

import scenarios._record
import scenarios._runner
import traces
import traces.__main__

WAIT = 120

THREADS = """
import threading, torch
w = torch.ones(1, requires_grad=True)
def work():
    for _ in range(20):
        (w * 2.5).sum().backward()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
{main_thread}
for t in threads: t.join()
print("grad", w.grad.item() / 2.5)
"""


def write(folder, name: str, code: str):
    path = folder / name
    path.write_text(textwrap.dedent(code))
    return path


def python(*argv: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=WAIT)


# -- threads and processes ------------------------------------------------------------------


def untraced_in_this_process(script, capsys) -> str:
    """What ``python SCRIPT`` prints, run here (torch is loaded already: a process would only load it again)."""
    capsys.readouterr()
    runpy.run_path(str(script), run_name="__main__")
    return capsys.readouterr().out


def test_backward_on_other_threads_computes_what_it_does_untraced(tmp_path, capsys):
    script = write(tmp_path, "threads.py", THREADS.format(main_thread=""))
    untraced = untraced_in_this_process(script, capsys)
    traced = python("-m", "traces", "threads.py", cwd=tmp_path)
    assert untraced == "grad 80.0\n"  # and it ended without an exception
    assert traced.stdout == "grad 80.0\n"  # 4 threads x 20 backward passes, none lost
    assert traced.stderr == (
        "python -m traces: error: threads.py called backward only on other threads (80 times); the tracer "
        "follows the thread the script started on (trace another thread's with traces.record() inside it)\n"
    )
    assert traced.returncode == 1


def test_the_trace_says_which_backward_it_shows_when_other_threads_ran_some(tmp_path, capsys):
    script = write(tmp_path, "threads.py", THREADS.format(main_thread="(w * 2.5).sum().backward()"))
    untraced = untraced_in_this_process(script, capsys)
    traced = python("-m", "traces", "--views", "backward", "threads.py", cwd=tmp_path)
    assert traced.returncode == 0 and traced.stderr == ""
    assert untraced == "grad 81.0\n" and traced.stdout.startswith(untraced)
    words = traced.stdout.split()
    note = " ".join(words[len(words) - 1 - words[::-1].index("The") :])  # the last sentence, unwrapped
    assert note.startswith("The trace shows the 1st backward pass of the thread the script started on; backward ran on")
    assert note.endswith("while recording), untraced.")


def test_record_leaves_no_mode_behind_when_another_thread_ran_backward():
    w = torch.ones(1, requires_grad=True)
    done = threading.Event()

    def on_another_thread():
        (w * 3).sum().backward()
        done.set()

    with traces.record() as trace:
        worker = threading.Thread(target=on_another_thread)
        worker.start()
        worker.join()
        (w * 2).sum().backward()
    assert done.is_set() and w.grad.item() == 5.0  # both backward passes ran, as untraced
    assert [node.name for node in trace.graph.nodes] == ["SumBackward0", "MulBackward0", "AccumulateGrad"]
    assert torch._C._len_torch_dispatch_stack() == 0  # the tracer's mode is gone from this thread
    assert torch.autograd.backward.__module__ == "torch.autograd"  # and the originals are back
    worker = threading.Thread(target=lambda: (w * 2).sum().backward())
    worker.start()
    worker.join()
    assert w.grad.item() == 7.0


def test_a_forked_child_traces_nothing_and_the_parent_traces_once(tmp_path):
    write(
        tmp_path,
        "fork.py",
        """
        import os, sys, torch
        w = torch.ones(1, requires_grad=True)
        (w * 2).sum().backward()
        pid = os.fork()
        if pid == 0:
            (w * 3).sum().backward()
            print("child done", w.grad.item(), flush=True)
            sys.exit(0)
        os.waitpid(pid, 0)
        print("parent done", w.grad.item(), flush=True)
        """,
    )
    traced = python("-m", "traces", "--views", "graph", "fork.py", cwd=tmp_path)
    assert traced.returncode == 0 and traced.stderr == ""
    lines = traced.stdout.splitlines()
    assert lines[:2] == ["child done 5.0", "parent done 2.0"]
    assert traced.stdout.count("Autograd graph") == 1


def test_os_exit_after_the_backward_says_the_trace_was_lost(tmp_path):
    write(tmp_path, "ends.py", "import os, torch\nw = torch.ones(1, requires_grad=True)\n(w * 2).sum().backward()\nos._exit(3)\n")
    traced = python("-m", "traces", "ends.py", cwd=tmp_path)
    assert traced.returncode == 3 and traced.stdout == ""
    assert traced.stderr == "python -m traces: ends.py ended with os._exit(3), so the trace was not printed\n"


# -- scripts that cannot run -------------------------------------------------------------------


# ``python -m traces SCRIPT`` is ``main([SCRIPT])``: run here, in the script's folder, to spare a
# process that would load torch again (the command itself runs from the shell in the tests above).


def traced_in_this_process(argv: list[str], folder, monkeypatch, capsys) -> tuple[int, str, str]:
    """The status, stdout and stderr of ``python -m traces ARGV`` run in ``folder``."""
    monkeypatch.chdir(folder)
    capsys.readouterr()
    status = traces.__main__.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_a_syntax_error_reads_as_python_prints_it(tmp_path, monkeypatch, capsys):
    write(tmp_path, "broken.py", "x = 1\ndef (\n")
    untraced = python("broken.py", cwd=tmp_path)
    status, out, err = traced_in_this_process(["broken.py"], tmp_path, monkeypatch, capsys)
    assert (status, out, err) == (untraced.returncode, "", untraced.stderr)
    assert err.startswith(f'  File "{tmp_path}/broken.py", line 2\n') and status == 1


def test_a_script_python_cannot_open_is_python_s_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    untraced = python("notes.txt/s.py", cwd=tmp_path)
    status, _, err = traced_in_this_process(["notes.txt/s.py"], tmp_path, monkeypatch, capsys)
    assert status == untraced.returncode == 2
    said = untraced.stderr.split(": ", 1)[1]  # after python's own name
    assert said == f"can't open file '{tmp_path}/notes.txt/s.py': [Errno 20] Not a directory\n"
    assert err == f"python -m traces: error: {said}"


def test_dev_null_runs_as_an_empty_script(tmp_path, monkeypatch, capsys):
    status, out, err = traced_in_this_process(["/dev/null"], tmp_path, monkeypatch, capsys)
    assert status == 1 and out == ""
    assert err.startswith("python -m traces: error: /dev/null never called backward")


# -- Ctrl-C ------------------------------------------------------------------------------------


def interrupted_while_starting(argv: list[str], marker: str, cwd) -> tuple[int, list[str]]:
    """Start ``python -X importtime ARGV``, press Ctrl-C once ``marker`` is imported; the status and
    what it said on stderr, without the import times."""
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    said = []
    for line in process.stderr:
        said.append(line)
        if line.startswith("import time:") and line.split("|")[-1].strip() == marker:
            break
    process.send_signal(signal.SIGINT)
    said += process.stderr.readlines()
    process.wait(WAIT)
    process.stdout.close()
    process.stderr.close()
    return process.returncode, [line for line in said if not line.startswith("import time:")]


@pytest.mark.parametrize(
    "argv, marker, prog",
    [
        (["-m", "traces", "script.py"], "traces._starting", "python -m traces"),
        (["-m", "traces.gdb", "--break", "f", "script.py"], "traces._starting", "python -m traces.gdb"),
        (["benchmarks/run.py", "--quick"], "scenarios._ctrl_c", "benchmarks/run.py"),
    ],
)
def test_ctrl_c_while_a_command_starts_is_one_line(argv, marker, prog, tmp_path):
    cwd = ROOT if argv[0].startswith("benchmarks") else tmp_path
    status, said = interrupted_while_starting(argv, marker, cwd)
    assert (status, said) == (130, [f"{prog}: interrupted (Ctrl-C) while starting; nothing was done\n"])


def test_ctrl_c_while_the_trace_is_printed_or_saved_is_one_line(tmp_path, monkeypatch, capsys):
    script = write(tmp_path, "s.py", "import torch\nw = torch.ones(1, requires_grad=True)\n(w * 2).sum().backward()\n")

    def press_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(traces.__main__, "show_and_save", press_ctrl_c)
    assert traces.__main__.main([str(script)]) == 130
    err = capsys.readouterr().err
    assert err == "\npython -m traces: interrupted (Ctrl-C); no file was left half-written\n"


def test_ctrl_c_before_a_scenario_or_the_recorder_parses_its_options_is_one_line(monkeypatch, capsys):
    def press_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scenarios._runner, "build_parser", press_ctrl_c)
    assert scenarios._runner.run_scenario("backward", lambda **_: None, lambda facts: []) == 130
    assert capsys.readouterr().err == "scenarios/backward.py: interrupted (Ctrl-C); no file was left half-written\n"
    monkeypatch.setattr(scenarios._record, "build_parser", press_ctrl_c)
    assert scenarios._record.main([]) == 130
    assert capsys.readouterr().err == "scenarios/_record.py: interrupted (Ctrl-C); the traces recorded so far are whole\n"


def test_a_program_that_imports_traces_keeps_its_own_ctrl_c(tmp_path):
    run = python("-c", "import signal, traces; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)", cwd=tmp_path)
    assert run.stdout == "True\n"
