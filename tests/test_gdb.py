"""Into the C++ with gdb: python -m traces.gdb stops in the kernel of an op a scenario runs."""

import functools
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from traces import gdb

GDB_TIMEOUT = 300  # seconds; a session reads libtorch_cpu's symbols (~10 s on an idle 2-core machine)


@functools.cache
def gdb_unavailable() -> str | None:
    """Why gdb cannot run a program here (not installed, or ptrace not permitted), or None."""
    if shutil.which("gdb") is None:
        return "gdb is not installed (.ci/run installs it with apt-get)"
    try:
        probe = subprocess.run(
            ["gdb", "-q", "-batch", "-nx", "-ex", "run", "--args", sys.executable, "-c", "pass"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "gdb did not run a program within 60 s"
    output = probe.stdout + probe.stderr
    if "exited normally" not in output:
        problem = next((line for line in output.splitlines() if "ptrace" in line or "not permitted" in line), output[-200:])
        return f"gdb cannot run a program here (ptrace): {problem.strip()}"
    return None


@pytest.fixture
def working_gdb():
    problem = gdb_unavailable()
    if problem is not None:
        pytest.skip(problem)


def test_the_command_stops_only_in_the_function_not_its_plt_stub():
    argv = gdb.gdb_argv(["python", "scenarios/backward.py"], ["at::native::structured_mul_out::impl"], batch=True)
    commands = [argv[i + 1] for i, part in enumerate(argv) if part == "-ex"]
    assert commands.index("tcatch load libtorch_cpu") < commands.index("run") < commands.index("sharedlibrary libtorch_cpu")
    assert 'break at::native::structured_mul_out::impl if !$_caller_matches(".*@plt$", 0)' in commands
    assert commands[-4:] == ["continue", "backtrace", "x/4i $pc", "kill"]
    assert argv[:4] == ["gdb", "-q", "-batch", "-nx"]
    assert argv[-3:] == ["--args", "python", "scenarios/backward.py"]


def test_an_interactive_session_reads_your_gdbinit_and_ends_at_the_prompt():
    argv = gdb.gdb_argv(["python", "x.py"], ["f"])
    assert "-batch" not in argv and "-nx" not in argv and "kill" not in argv
    assert "sharedlibrary libtorch_cuda" not in argv
    assert "sharedlibrary libtorch_cuda" in gdb.gdb_argv(["python", "x.py"], ["f"], cuda=True)


def test_pythons_own_gdb_helper_is_trusted_where_it_exists(tmp_path):
    python = tmp_path / "python3.99"
    python.write_text("")
    assert "-iex" not in gdb.gdb_argv([str(python), "x.py"], ["f"])
    (tmp_path / "python3.99-gdb.py").write_text("")
    argv = gdb.gdb_argv([str(python), "x.py"], ["f"])
    assert argv[argv.index("-iex") + 1] == f"add-auto-load-safe-path {tmp_path / 'python3.99-gdb.py'}"


def test_an_op_is_turned_into_the_kernel_the_ops_view_names():
    assert gdb.kernel_symbol("aten::mul.Tensor", "cpu") == "at::native::structured_mul_out::impl"
    assert gdb.kernel_symbol("aten::addmm", "cpu") == "at::native::structured_addmm_out_cpu::impl"
    assert gdb.kernel_symbol("aten::addmm", "cuda") == "at::native::structured_addmm_out_cuda::impl"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scenarios/backward.py"], "name a kernel to stop in: --op aten::mul.Tensor"),
        (["--op", "aten::no_such_op", "scenarios/backward.py"], "--op: aten::no_such_op is not an operator this torch knows"),
        (["--op", "profiler::_record_function_enter_new", "scenarios/backward.py"], "--op: profiler::_record_function_enter_new has no kernel named"),
        (["--device", "tpu", "--op", "aten::mul.Tensor", "scenarios/backward.py"], "--device: 'tpu' is not cpu or cuda"),
        (["--op", "aten::mul.Tensor", "no_such_script.py"], "argument script: 'no_such_script.py' does not exist"),
        (["--op", "aten::mul.Tensor", "scenarios"], "argument script: 'scenarios' is a folder, not a Python script"),
        (["--op", "aten::mul.Tensor", ""], "argument script: the path is empty; give a Python script"),
        (["--break", "", "scenarios/backward.py"], "argument --break: '' is not a function name"),
    ],
)  # fmt: skip
def test_a_bad_request_is_one_line_and_exit_2(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(gdb.os, "execvp", lambda *args: pytest.fail("gdb was started"))
    with pytest.raises(SystemExit) as exit_info:
        gdb.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_without_gdb_it_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr(gdb.shutil, "which", lambda name: None)
    assert gdb.main(["--op", "aten::mul.Tensor", "scenarios/backward.py"]) == 1
    assert capsys.readouterr().err == "python -m traces.gdb: error: gdb is not installed (apt-get install gdb)\n"


def test_gdb_stops_in_the_mul_kernel_of_the_backward_scenario_called_from_python(working_gdb):
    result = subprocess.run(
        [sys.executable, "-m", "traces.gdb", "--batch", "--op", "aten::mul.Tensor", "scenarios/backward.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=GDB_TIMEOUT,
    )  # fmt: skip
    out = result.stdout
    assert out.splitlines()[0].startswith("gdb -q -batch -nx ")  # the command, printed first
    frames = [line for line in out.splitlines() if re.match(r"#\d+ ", line)]
    assert frames, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.match(r"#0 .* in at::native::structured_mul_out::impl\(at::Tensor const&", frames[0])
    assert "@plt" not in frames[0]
    assert frames[0].endswith("libtorch_cpu.so") and " at " not in frames[0]  # a function name, no source line
    assert re.search(r"^=> 0x[0-9a-f]+ <at::native::structured_mul_out::impl", out, re.MULTILINE)  # its machine code
    chain = "\n".join(frames)
    for function in ("wrapper_CPU_mul_Tensor", "at::_ops::mul_Tensor::redispatch", "VariableType::(anonymous namespace)::mul_Tensor",
                     "at::_ops::mul_Tensor::call", "torch::autograd::THPVariable_mul"):  # fmt: skip
        assert function in chain, function
    assert chain.index("at::_ops::mul_Tensor::call") < chain.index("THPVariable_mul")  # the stack, innermost first


# The program waits until a debugger is attached (as a scenario paused at a breakpoint
# waits in VSCode), then runs the backward scenario's lesson.
WAIT_FOR_A_TRACER_THEN_RUN = """
import time
from scenarios.backward import backward_pass

print("torch is loaded", flush=True)

def traced():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("TracerPid:")) != 0

while not traced():
    time.sleep(0.05)
backward_pass()
"""


def test_gdb_attached_like_the_vscode_configuration_stops_in_the_kernel(working_gdb):
    from vscode_files import launch_configurations

    [config] = [c for c in launch_configurations() if c["type"] == "cppdbg"]
    setup = [command["text"] for command in config["setupCommands"]]
    libraries = config["symbolLoadInfo"]["exceptionList"].split(";")
    program = subprocess.Popen([sys.executable, "-c", WAIT_FOR_A_TRACER_THEN_RUN], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert program.stdout.readline() == "torch is loaded\n"  # attach once it is, as to a paused scenario
        commands = [*setup, *(f"sharedlibrary {library}" for library in libraries),
                    f"break at::native::structured_mul_out::impl {gdb.NOT_IN_PLT}", "continue", "backtrace", "kill"]  # fmt: skip
        result = subprocess.run(
            ["gdb", "-q", "-batch", "-nx", "-iex", "set auto-solib-add off",
             *(part for command in commands for part in ("-ex", command)), "-p", str(program.pid)],
            capture_output=True, text=True, timeout=GDB_TIMEOUT,
        )  # fmt: skip
    finally:
        program.kill()
        program.wait(timeout=60)
    if "ptrace: Operation not permitted" in result.stderr:
        pytest.skip("attaching to a process needs ptrace permission (/proc/sys/kernel/yama/ptrace_scope)")
    frames = [line for line in result.stdout.splitlines() if re.match(r"#\d+ ", line)]
    assert frames and "at::native::structured_mul_out::impl(" in frames[0], result.stdout[-2000:] + result.stderr[-2000:]
    assert "torch::autograd::THPVariable_mul" in "\n".join(frames)
