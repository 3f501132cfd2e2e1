"""python -m traces --engine python SCRIPT: the script's backward passes run in traces/mirror/engine.py."""

import re
import textwrap

import pytest
import torch

from traces.mirror import engine
from traces.__main__ import main

SCRIPT = """
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
loss = model(torch.randn(5, 3)).pow(2).mean()
loss.backward()
(g,) = torch.autograd.grad(model(torch.randn(2, 3)).sum(), model[0].bias)
print("backward by", torch.autograd.backward.__module__, "grad by", torch.autograd.grad.__module__)
print("bias grad", model[0].bias.grad.tolist(), "grad", g.tolist())
"""


def run(tmp_path, capsys, *options):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    assert main([*options, "--views", "backward", str(script)]) == 0
    return capsys.readouterr().out


def test_engine_python_runs_the_scripts_backward_in_the_mirror_with_torchs_numbers(tmp_path, capsys):
    originals = torch.autograd.backward, torch.autograd.grad
    torch_out = run(tmp_path, capsys)
    python_out = run(tmp_path, capsys, "--engine", "python")
    assert "backward by torch.autograd grad by torch.autograd" in torch_out
    assert "backward by traces.mirror.engine grad by traces.mirror.engine" in python_out
    numbers = [line for line in torch_out.splitlines() if line.startswith("bias grad")]
    assert numbers and numbers == [line for line in python_out.splitlines() if line.startswith("bias grad")]
    assert (torch.autograd.backward, torch.autograd.grad) == originals  # put back afterwards


def without_times(view: str) -> str:
    """A backward view without what no two runs share: its wall times (``746 µs``), and the
    slowest-first list that they order."""
    view = view.split("Backward time, slowest first")[0]
    return re.sub(r"\d+(\.\d+)? (µs|ms|s)\b", "<time>", view)


def test_the_backward_view_is_the_same_under_both_engines(tmp_path, capsys):
    torch_view = run(tmp_path, capsys).split("Backward: the order")[1]
    python_view = run(tmp_path, capsys, "--engine", "python").split("Backward: the order")[1]
    assert "AddmmBackward0" in without_times(python_view) and "Backward time, slowest first" in python_view
    assert without_times(python_view) == without_times(torch_view)


def test_an_unknown_engine_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--engine", "java", "s.py"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "argument --engine: invalid choice: 'java'" in err


def test_installed_routes_backward_and_grad_then_puts_torchs_back():
    originals = torch.autograd.backward, torch.autograd.grad
    with engine.installed():
        assert (torch.autograd.backward, torch.autograd.grad) == (engine.backward, engine.grad)
        w = torch.tensor(1.0, requires_grad=True)
        steps = []
        with engine.watching(steps.append):
            ((w + 2) * (w + 1)).backward()  # Tensor.backward -> torch.autograd.backward -> the mirror
        assert [step.name for step in steps] == ["MulBackward0", "AddBackward0", "AddBackward0",
                                                 "torch::autograd::AccumulateGrad"]
        assert w.grad.item() == 5.0
    assert (torch.autograd.backward, torch.autograd.grad) == originals


def test_the_debugger_extension_steps_into_the_engine_but_past_the_rest_of_traces():
    from pydevd_plugins.extensions import stepthrough_session

    dont_trace = type("pydevd_dont_trace", (), {"should_trace_hook": None})
    stepthrough_session.step_past_tracer(dont_trace, per_frame=False)
    hook = dont_trace.should_trace_hook
    assert hook(engine.evaluate_function.__code__, engine.__file__) is True
    from traces.recorders.node_hooks import register_node_hooks  # what the recorder calls: stepped past

    assert hook(register_node_hooks.__code__, register_node_hooks.__code__.co_filename) is False
    from traces.recorders import backward as backward_recorder

    function = backward_recorder.changed_in_one  # a plain function of the backward recorder
    assert hook(function.__code__, function.__code__.co_filename) is False


def test_the_trace_shows_the_same_saved_tensors_freed_under_both_engines(tmp_path, capsys):
    freed = []
    for options in ([], ["--engine", "python"]):
        folder = tmp_path / (options[-1] if options else "torch")
        run(tmp_path, capsys, "--save-trace", str(folder), *options)
        freed.append(re.findall(r'"freed": (true|false)', (folder / "script.json").read_text()))
    assert freed[1] == freed[0]
    assert "true" in freed[0] and "false" in freed[0]
