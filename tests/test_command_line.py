"""The command line every scenario shares."""

import pytest
import torch
from conftest import run_script, scenario_module, scenario_names

SCENARIOS = scenario_names()


def test_the_autograd_scenarios_exist():
    assert {"backward", "leaf_gradients", "unsqueeze", "in_place"} <= set(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_help_lists_the_shared_options(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        scenario_module(name).main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--trace", "--save-trace", "--native", "--device", "--seed"):
        assert option in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--seed", "x"], "argument --seed: 'x' is not a whole number"),
        (["--seed", "-1"], "argument --seed: -1 is too small; it must be 0 or more"),
        (
            ["--seed", "18446744073709551616"],
            "argument --seed: 18446744073709551616 is too large; it must be at most 18446744073709551615",
        ),
        (["--save-trace", ""], "argument --save-trace: the path is empty; give a folder"),
        (["--device", "toaster"], "argument --device: 'toaster' is not a device name"),
        (["--native"], "--native adds the C++ path to a trace: use it with --trace or --save-trace"),
    ],
)
@pytest.mark.parametrize("name", SCENARIOS)
def test_a_bad_argument_is_one_line_and_exit_2(name, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        scenario_module(name).main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


@pytest.mark.skipif(torch.accelerator.is_available(), reason="this machine has an accelerator")
def test_an_absent_accelerator_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        scenario_module("backward").main(["--device", "cuda"])
    assert exit_info.value.code == 2
    assert "'cuda' is not available on this machine" in capsys.readouterr().err


def test_save_trace_into_a_file_is_refused(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(SystemExit):
        scenario_module("backward").main(["--save-trace", str(a_file)])
    assert "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"


def test_bad_option_from_the_shell_prints_no_traceback():
    result = run_script("scenarios/backward.py", "--device", "nowhere")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "scenarios/backward.py: error: argument --device: 'nowhere' is not a device name (try auto, cpu or cuda) (see --help)"
    ]


@pytest.mark.xdist_group("traced_run")
@pytest.mark.parametrize("name", SCENARIOS)
def test_trace_prints_all_four_views_and_saves_json(name, traced_run):
    # In this process, to spare a torch import per scenario, and once per session for every
    # test that reads such a run (tests/conftest.py); the script itself is run from the shell
    # by the tests above and below and by each scenario's tests.
    run = traced_run(name)
    out = run.out
    assert "Autograd graph" in out
    assert "Backward: the order in which the engine ran the nodes" in out
    assert "ATen ops: what ran below autograd" in out
    assert "Torch source entered" in out
    for trace_name in getattr(scenario_module(name), "RECORDED_TRACES", (name,)):  # one per rank, for ddp
        data = run.saved(trace_name)
        assert data["scenario"] == trace_name
        assert data["graph"]["nodes"] and data["backward"]
        # Below Python: every node has a formula or says what it is instead, every op its kernel.
        for node in data["graph"]["nodes"]:
            derivative = node["derivative"]
            assert derivative["kind"] in ("formula", "c++", "custom", "compiled"), (node["name"], derivative)
            assert derivative["summary"] and (derivative["kind"] != "formula" or derivative["formulas"])
        assert {k["op"] for k in data["kernels"]} == {call["op"] for call in data["ops"]}

