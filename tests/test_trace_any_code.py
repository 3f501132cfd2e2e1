"""`python -m traces SCRIPT` and `traces.record()`: tracing code the project has never seen."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT
from torch import nn

import traces
from traces.__main__ import main

ORIGINALS = (torch.autograd.backward, torch.autograd.grad)

NOTE_GRAPH = """
    import sys
    import torch

    w = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor(2.0, requires_grad=True)
    a = w + x
    b = w + 1
    y = a * b
    y.backward()
    print("w.grad =", w.grad.item(), "args", sys.argv[1:])
"""


def write_script(folder, text: str, name: str = "script.py"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def originals_in_place() -> bool:
    return (torch.autograd.backward, torch.autograd.grad) == ORIGINALS


def run_traces(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "traces", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )


def test_a_script_runs_with_its_arguments_then_the_four_views_print(tmp_path, capsys):
    script = write_script(tmp_path, NOTE_GRAPH)
    assert main([str(script), "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("w.grad = 5.0 args ['--seed', '7']\n")  # the script's own output comes first
    for title in ("Autograd graph", "Backward: the order", "ATen ops", "Torch source entered"):
        assert out.index(title) > out.index("w.grad = 5.0")
    assert "y = MulBackward0" in out and "w = 1 (leaf" in out  # nodes named after the script's variables
    assert originals_in_place()


def test_from_the_shell_the_exit_status_and_output_pass_through(tmp_path):
    script = write_script(tmp_path, NOTE_GRAPH + "    sys.exit(3)\n")
    result = run_traces(str(script), "--flag")
    assert result.returncode == 3
    assert result.stdout.startswith("w.grad = 5.0 args ['--flag']\n")
    assert "Autograd graph" in result.stdout
    assert result.stderr == ""


def test_an_exception_in_the_script_prints_its_own_traceback_and_exits_1(tmp_path, capsys):
    # In this process (the shell's form is the test above): main() prints the traceback itself.
    script = write_script(tmp_path, NOTE_GRAPH + "    raise ValueError('after backward')\n")
    assert main([str(script)]) == 1
    out, err = capsys.readouterr()
    assert "Autograd graph" in out  # recorded before the error, so shown
    lines = err.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith(f'  File "{script}", line ')  # the script's frame first: no runner frames
    assert lines[-1] == "ValueError: after backward"


def test_sys_exit_with_a_message_prints_it_and_exits_1(tmp_path, capsys):
    script = write_script(tmp_path, NOTE_GRAPH + "    sys.exit('stopped here')\n")
    assert main([str(script)]) == 1
    assert capsys.readouterr().err == "stopped here\n"


def test_ctrl_c_in_the_script_exits_130_without_a_trace(tmp_path, capsys):
    script = write_script(tmp_path, NOTE_GRAPH + "    raise KeyboardInterrupt\n")
    assert main([str(script)]) == 130
    captured = capsys.readouterr()
    assert "Autograd graph" not in captured.out
    assert captured.err.splitlines()[-1] == "KeyboardInterrupt"
    assert originals_in_place()


def test_an_error_before_backward_restores_torch_and_says_nothing_more(tmp_path, capsys):
    script = write_script(tmp_path, "raise RuntimeError('before backward')\n")
    assert main([str(script)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "RuntimeError: before backward"
    assert originals_in_place()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.py"], "python -m traces: error: can't open file '{tmp}/missing.py': [Errno 2] No such file or directory"),
        (["."], "python -m traces: error: '.' is a folder, not a script"),
        (["--save-trace", "dangling", "s.py"], "argument --save-trace: 'dangling' is a symbolic link that leads nowhere"),
        (["--save-trace", "loop/out", "s.py"], "argument --save-trace: 'loop' is a symbolic link that leads nowhere"),
        (["--depth", "x", "s.py"], "argument --depth: 'x' is not a whole number"),
        (["--backward", "0", "s.py"], "argument --backward: 0 is too small; it must be 1 or more"),
        (["--views", "graph,colours", "s.py"], "argument --views: 'graph,colours' is not a list of views"),
        (["--save-trace", "", "s.py"], "argument --save-trace: the path is empty; give a folder"),
        ([], "the following arguments are required: SCRIPT"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink("nowhere", "dangling")
    os.symlink("loop", "loop")
    message = message.format(tmp=tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        assert main(argv) == 2
        raise SystemExit(2)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_script_that_never_calls_backward_is_one_line_and_exit_1(tmp_path, capsys):
    script = write_script(tmp_path, "import torch\nprint(torch.ones(2).sum().item())\n")
    assert main([str(script)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "2.0\n"
    assert captured.err == (
        f"python -m traces: error: {script} never called backward (Tensor.backward, "
        "torch.autograd.backward or torch.autograd.grad), so there is nothing to trace\n"
    )


def test_backward_n_records_the_nth_and_says_when_there_are_fewer(tmp_path, capsys):
    script = write_script(
        tmp_path,
        """
        import torch
        w = torch.ones(2, requires_grad=True)
        first = (w * 2).sum()
        first.backward()
        second = w.exp().sum()
        torch.autograd.grad(second, w)
        """,
    )
    assert main(["--backward", "2", "--views", "graph", str(script)]) == 0
    out = capsys.readouterr().out
    assert "second = SumBackward0" in out and "ExpBackward0" in out and "MulBackward0" not in out
    assert main(["--backward", "3", str(script)]) == 1
    assert capsys.readouterr().err == f"python -m traces: error: {script} called backward 2 times; --backward 3 asks for the 3rd\n"


def test_views_prints_only_the_views_asked_for(tmp_path, capsys):
    script = write_script(tmp_path, NOTE_GRAPH)
    assert main(["--views", "backward,ops", str(script)]) == 0
    out = capsys.readouterr().out
    assert "Backward: the order" in out and "ATen ops" in out
    assert "Autograd graph" not in out and "Torch source entered" not in out


def test_save_trace_writes_json_and_mermaid_named_after_the_script(tmp_path, capsys):
    script = write_script(tmp_path, NOTE_GRAPH, name="note_graph.py")
    out_dir = tmp_path / "saved"
    assert main(["--save-trace", str(out_dir), "--views", "graph", str(script)]) == 0
    data = json.loads((out_dir / "note_graph.json").read_text())
    assert data["scenario"] == "note_graph"
    assert sorted(node["variable"] for node in data["graph"]["nodes"]) == ["a", "b", "w", "x", "y"]
    assert (out_dir / "note_graph.mmd").read_text().startswith("flowchart")
    out = capsys.readouterr().out
    assert f"Saved the trace:\n  {out_dir / 'note_graph.json'}\n" in out  # each path alone on its line


def test_save_trace_into_a_file_is_refused_before_the_script_runs(tmp_path, capsys):
    script = write_script(tmp_path, "print('ran')\n")
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        main(["--save-trace", str(a_file), str(script)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "is a file, not a folder" in captured.err and "ran" not in captured.out
    assert a_file.read_text() == "keep me"


def test_help_says_what_it_does_and_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--save-trace DIR", "--backward N", "--views LIST", "--native", "--depth N", "SCRIPT", "first backward pass"):
        assert text in out


# traces.record(), the same recording for a block of code


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def test_record_names_parameters_and_variables_and_changes_no_gradient():
    torch.manual_seed(0)
    model, x = TwoLayers(), torch.randn(5, 3)
    model(x).sum().backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    with traces.record() as trace:
        loss = model(x).sum()
        loss.backward()
    assert originals_in_place()
    variables = {node.variable for node in trace.graph.nodes}
    assert {"loss", "hidden.weight", "hidden.bias", "out.weight", "out.bias"} <= variables
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter.grad, expected[name])
    assert trace.scenario == "trace" and trace.device == "cpu"


def test_record_shows_and_saves(tmp_path):
    from rich.console import Console

    with traces.record(name="two_layers") as trace:
        TwoLayers()(torch.ones(2, 3)).sum().backward()
    console = Console(record=True, width=100)
    trace.show(console, views=("graph",))
    assert "AddmmBackward0" in console.export_text()
    written = trace.save(tmp_path)
    assert [path.name for path in written][:2] == ["two_layers.json", "two_layers.mmd"]


def test_record_stops_at_the_end_of_the_traced_backward():
    with traces.record() as trace:
        w = torch.ones(2, requires_grad=True)
        (w * 2).sum().backward()
        assert originals_in_place()  # put back as soon as the traced backward ended
        torch.ones(3).exp()
    assert "aten::exp" not in [call.op for call in trace.ops]


def test_record_the_second_backward_and_none_when_there_is_none():
    w = torch.ones(2, requires_grad=True)
    with traces.record(backward=2) as trace:
        (w * 2).sum().backward()
        w.exp().sum().backward()
    assert "ExpBackward0" in [node.name for node in trace.graph.nodes]
    with traces.record() as empty:
        torch.ones(2) * 2
    assert empty.graph is None and [call.op for call in empty.ops] == ["aten::ones", "aten::mul.Tensor"]


def test_record_refuses_a_backward_number_below_1():
    with pytest.raises(ValueError, match="counted from 1"):
        with traces.record(backward=0):
            pass


def test_record_puts_torch_back_when_the_block_raises():
    from torch import nn as torch_nn

    with pytest.raises(ZeroDivisionError):
        with traces.record():
            assert not originals_in_place()
            1 / 0
    assert originals_in_place()
    assert torch._C._len_torch_dispatch_stack() == 0
    assert len(torch_nn.modules.module._global_forward_hooks) == 0


def test_a_backward_inside_a_backward_is_part_of_it():
    class Twice(torch.autograd.Function):  # its backward runs a backward of its own
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                inner = x.detach().requires_grad_()
                (inner * 2).sum().backward()
            return grad * inner.grad

    w = torch.ones(2, requires_grad=True)
    with traces.record(backward=2) as trace:
        Twice.apply(w).sum().backward()  # the first, with one inside it
        (w * 3).sum().backward()  # the second
    assert "MulBackward0" in [node.name for node in trace.graph.nodes]
    assert "TwiceBackward" not in [node.name for node in trace.graph.nodes]


def test_what_imports_run_is_left_out_of_the_ops_and_source_views(tmp_path, capsys):
    (tmp_path / "helper.py").write_text("import torch\nAT_IMPORT = torch.ones(3).exp()\n")
    script = write_script(
        tmp_path,
        """
        import torch
        import helper  # runs aten::exp while it is imported
        w = torch.ones(2, requires_grad=True)
        (w * helper.AT_IMPORT[:2]).sum().backward()
        """,
    )
    assert main(["--views", "ops", "--save-trace", str(tmp_path), str(script)]) == 0
    ops = [call["op"] for call in json.loads((tmp_path / "script.json").read_text())["ops"]]
    assert "aten::exp" not in ops and "aten::mul.Tensor" in ops


def test_native_adds_the_cpp_path_below_each_op(tmp_path, capsys):
    script = write_script(tmp_path, "import torch\nw = torch.ones(2, requires_grad=True)\n(w * 3).sum().backward()\n")
    assert main(["--native", "--save-trace", str(tmp_path), "--views", "ops", str(script)]) == 0
    kernels = json.loads((tmp_path / "script.json").read_text())["kernels"]
    mul = next(kernel for kernel in kernels if kernel["op"] == "aten::mul.Tensor")
    assert mul["cpp_path"] and mul["cpp_path"][0]["layer"] == "Python"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_save_trace_into_a_read_only_folder_is_refused_before_the_script_runs(tmp_path, capsys):
    script = write_script(tmp_path, "print('ran')\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(SystemExit) as exit_info:
        main(["--save-trace", str(locked / "traces"), str(script)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert f"cannot write into {str(locked)!r}" in captured.err and "ran" not in captured.out


def test_a_script_that_changes_folder_still_saves_where_the_command_was_run(tmp_path, monkeypatch, capsys):
    script = write_script(tmp_path, NOTE_GRAPH + "    import os\n    os.chdir(os.sep)\n    raise ValueError('boom')\n")
    monkeypatch.chdir(tmp_path)
    assert main(["--views", "graph", "--save-trace", "out", script.name]) == 1
    saved = json.loads((tmp_path / "out" / "script.json").read_text())
    assert {node["path"] for node in saved["graph"]["nodes"] if node["path"]} == {"script.py"}
    captured = capsys.readouterr()
    assert "  script.py:" in captured.out  # the node's line, relative to where the command was run
    assert f'  File "{script}", line ' in captured.err and "ValueError: boom" in captured.err
