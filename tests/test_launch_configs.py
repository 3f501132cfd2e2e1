"""The VSCode files: every launch configuration steps into torch, every scenario has one."""

import argparse
from pathlib import Path

import pytest

from conftest import ROOT, scenario_module, scenario_names
from scenarios._runner import build_parser
from vscode_files import launch_configurations, parse_jsonc, read_jsonc, settings, substitute

# The properties the Python Debugger extension declares for "type": "debugpy"
# (microsoft/vscode-python-debugger, package.json, version 2026.7.0-dev:
# contributes.debuggers[0].configurationAttributes). VSCode warns
# "Property ... is not allowed" for anything else.
DEBUGPY_PROPERTIES = {
    "launch": {
        "args", "autoReload", "autoStartBrowser", "breakOnSystemExit", "clientOS", "code", "console",
        "consoleName", "cwd", "debugAdapterPath", "django", "env", "envFile", "gevent", "guiEventLoop",
        "jinja", "justMyCode", "logToFile", "module", "pathMappings", "program", "purpose", "pyramid",
        "python", "pythonArgs", "redirectOutput", "showReturnValue", "stopOnEntry", "subProcess", "sudo",
        "terminalQuoteCharacter",
    },
    "attach": {
        "autoReload", "breakOnSystemExit", "clientOS", "connect", "consoleName", "debugAdapterPath",
        "django", "jinja", "justMyCode", "listen", "logToFile", "pathMappings", "processId",
        "redirectOutput", "showReturnValue", "subProcess", "terminalQuoteCharacter",
    },
}  # fmt: skip
DEBUGPY_ENDPOINT_PROPERTIES = {"host", "port"}  # of "connect" and "listen"
# What the C/C++ extension declares for "type": "cppdbg", "request": "attach"
# (microsoft/vscode-cpptools, Extension/tools/OptionsSchema.json, CppdbgAttachOptions,
# at commit 02174c1b794d3fa5223911bee9e94bf213835db6).
CPPDBG_ATTACH_PROPERTIES = {
    "targetArchitecture", "visualizerFile", "showDisplayString", "additionalSOLibSearchPath", "MIMode",
    "miDebuggerPath", "miDebuggerArgs", "miDebuggerServerAddress", "useExtendedRemote", "program", "processId",
    "filterStdout", "filterStderr", "sourceFileMap", "debuginfod", "logging", "pipeTransport", "setupCommands",
    "symbolLoadInfo", "variables", "deploySteps",
}  # fmt: skip
PURPOSES = {"debug-test", "debug-in-terminal"}
# What VSCode itself adds to every debugger's schema (vscode, debugger.ts, getSchemaAttributes).
VSCODE_PROPERTIES = {
    "name", "type", "request", "debugServer", "preLaunchTask", "postDebugTask", "internalConsoleOptions",
    "windows", "osx", "linux",
}  # fmt: skip
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

CONFIGURATIONS = launch_configurations()
NAMES = [config.get("name", "?") for config in CONFIGURATIONS]
PYTHON_CONFIGURATIONS = [config for config in CONFIGURATIONS if config.get("type") == "debugpy"]
GDB_CONFIGURATIONS = [config for config in CONFIGURATIONS if config.get("type") == "cppdbg"]
SCENARIO_PROGRAM = "${{workspaceFolder}}/scenarios/{}.py"


def scenario_of(config: dict) -> str | None:
    """The scenario a configuration runs, or None for one that runs something else."""
    program = Path(config.get("program", ""))
    if program.parent == Path("${workspaceFolder}/scenarios") and program.suffix == ".py":
        return program.stem
    return None


def scenario_parser(name: str, monkeypatch) -> argparse.ArgumentParser:
    """The argument parser the scenario's own main() builds (with its own options).

    main() hands its name, docstring and extra options to run_scenario; catch them
    there instead of running the lesson, and build the same parser.
    """
    module = scenario_module(name)
    handed = {}
    monkeypatch.setattr(module, "run_scenario", lambda *args, **kwargs: handed.update(args=args, kwargs=kwargs))
    if hasattr(module, "start_torchrun"):  # a scenario on several ranks hands its parser to the launcher
        monkeypatch.setattr(module, "start_torchrun", lambda *args, **kwargs: handed.update(parser=args[3]))
    module.main([])
    if "parser" in handed:
        return handed["parser"]
    return build_parser(handed["args"][0], handed["kwargs"].get("doc"), handed["kwargs"].get("add_options"))


def test_jsonc_drops_comments_and_trailing_commas_but_not_string_content():
    text = """// a comment
    {
        "url": "http://localhost:5678", /* a block
        comment */ "list": ["a,", "b // c",],
        "escaped": "a \\" // not a comment",
    }"""
    assert parse_jsonc(text) == {
        "url": "http://localhost:5678",
        "list": ["a,", "b // c"],
        "escaped": 'a " // not a comment',
    }


def test_launch_json_has_configurations():
    assert len(CONFIGURATIONS) >= 4


def test_every_configuration_is_pythons_but_the_one_for_gdb():
    assert len(PYTHON_CONFIGURATIONS) + len(GDB_CONFIGURATIONS) == len(CONFIGURATIONS)
    assert len(GDB_CONFIGURATIONS) == 1


@pytest.mark.parametrize("config", PYTHON_CONFIGURATIONS, ids=lambda c: c["name"])
def test_every_python_configuration_steps_into_torch(config):
    assert config["justMyCode"] is False


@pytest.mark.parametrize("config", PYTHON_CONFIGURATIONS, ids=lambda c: c["name"])
def test_every_property_is_one_the_python_debugger_declares(config):
    allowed = DEBUGPY_PROPERTIES[config["request"]] | VSCODE_PROPERTIES
    assert set(config) - allowed == set()
    for endpoint in ("connect", "listen"):
        assert set(config.get(endpoint, {})) <= DEBUGPY_ENDPOINT_PROPERTIES
    assert set(config.get("purpose", [])) <= PURPOSES


def test_configuration_names_are_unique():
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", scenario_names())
def test_every_scenario_has_a_configuration(name):
    configs = [config for config in CONFIGURATIONS if scenario_of(config) == name]
    assert len(configs) == 1, f"add a configuration for scenarios/{name}.py to .vscode/launch.json"
    config = configs[0]
    assert config["name"].startswith("Scenario: ")
    assert config["request"] == "launch"
    assert config["program"] == SCENARIO_PROGRAM.format(name)
    assert config["console"] == "integratedTerminal"
    assert config["cwd"] == "${workspaceFolder}"
    assert config["args"][:1] == ["--trace"]  # more only where the default run is long under a debugger


@pytest.mark.parametrize(
    "config", [c for c in CONFIGURATIONS if c.get("program", "${file}") != "${file}"], ids=lambda c: c["name"]
)
def test_every_program_exists(config):
    program = Path(substitute(config["program"]))
    assert program.is_file(), program
    assert program.is_relative_to(ROOT)


@pytest.mark.parametrize("config", [c for c in CONFIGURATIONS if scenario_of(c)], ids=lambda c: c["name"])
def test_every_args_list_is_accepted_by_its_scenario(config, monkeypatch):
    parser = scenario_parser(scenario_of(config), monkeypatch)
    args = parser.parse_args(substitute(config.get("args", [])))  # raises SystemExit(2) when refused
    assert args.trace is True  # F5 prints the trace too


def test_the_argument_check_can_fail(monkeypatch, capsys):
    parser = scenario_parser("backward", monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--trace", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("purpose", sorted(PURPOSES))
def test_the_editor_buttons_have_a_configuration_that_steps_into_torch(purpose):
    # "Debug Python File" (debug-in-terminal) and "Debug Test" (debug-test) use the
    # configuration with their purpose; without one they would fall back to justMyCode true.
    configs = [config for config in CONFIGURATIONS if purpose in config.get("purpose", [])]
    assert len(configs) == 1
    assert configs[0]["justMyCode"] is False


def test_the_current_file_configuration_runs_the_file_in_the_editor():
    config = next(c for c in CONFIGURATIONS if "debug-in-terminal" in c.get("purpose", []))
    assert config["program"] == "${file}"


def test_an_attach_configuration_connects_to_localhost_5678():
    attach = [config for config in PYTHON_CONFIGURATIONS if config["request"] == "attach"]
    assert [config["connect"] for config in attach] == [{"host": "127.0.0.1", "port": 5678}]


@pytest.mark.parametrize("config", CONFIGURATIONS, ids=NAMES)
def test_nothing_listens_or_connects_beyond_this_machine(config):
    for endpoint in ("connect", "listen"):
        if endpoint in config:
            assert config[endpoint].get("host") in LOCAL_HOSTS
    assert "debugServer" not in config


def test_settings_step_into_torch_run_pytest_and_use_the_venv():
    values = settings()
    assert values["debugpy.debugJustMyCode"] is False
    assert values["python.testing.pytestEnabled"] is True
    assert Path(values["python.defaultInterpreterPath"]).parts[-3:] == (".venv", "bin", "python")


def test_the_python_debugger_and_cpp_extensions_are_recommended():
    recommended = read_jsonc(ROOT / ".vscode" / "extensions.json")["recommendations"]
    assert {"ms-python.python", "ms-python.debugpy", "ms-vscode.cpptools"} <= set(recommended)


def test_trace_current_file_runs_python_m_traces_on_the_open_file(tmp_path, capsys):
    [config] = [c for c in CONFIGURATIONS if c["name"] == "Trace current file"]
    assert (config["request"], config["module"], config["args"]) == ("launch", "traces", ["${file}"])
    assert "program" not in config and config["console"] == "integratedTerminal"
    open_file = tmp_path / "my_model.py"
    open_file.write_text("import torch\nw = torch.ones(2, requires_grad=True)\nloss = (w * 3).sum()\nloss.backward()\n")
    # What debugpy runs for a "module" configuration: python -m traces <args>, here in-process.
    from traces.__main__ import main

    assert main(substitute(config["args"], file=open_file)) == 0
    out = capsys.readouterr().out
    assert "loss = SumBackward0" in out and "Torch source entered" in out


def test_the_gdb_configuration_attaches_to_a_picked_python_process_with_torchs_symbols():
    [config] = GDB_CONFIGURATIONS
    assert set(config) - (CPPDBG_ATTACH_PROPERTIES | VSCODE_PROPERTIES) == set()
    assert (config["request"], config["MIMode"], config["processId"]) == ("attach", "gdb", "${command:pickProcess}")
    assert substitute(config["program"]) == str(ROOT / ".venv" / "bin" / "python")
    assert config["symbolLoadInfo"]["loadAll"] is False
    assert {"libtorch_cpu.so", "libtorch_python.so"} <= set(config["symbolLoadInfo"]["exceptionList"].split(";"))
    assert "set breakpoint pending on" in [command["text"] for command in config["setupCommands"]]
