"""The documentation stays true as a whole: the README is a front page, every relative link
resolves, every scenario has its line and launch configuration, and every shell command the
pages show is run by a test (named here, and checked to run it) or says why it is not."""

import ast
import re
from pathlib import Path

import pytest
from doc_pages import ROOT, anchors, broken_links, code_blocks, page, pages, shell_commands, slug
from vscode_files import launch_configurations

from scenarios._record import scenario_names

# Each command a page shows in a ```bash block, and the test that runs it: "file::function"
# (a test or the fixture it uses) and fragments of that function's source that show it runs
# this command. Where the test runs a variant, the note says which.
RUN_BY_A_TEST = {
    ".venv/bin/python -m traces your_script.py [its arguments]": (
        "tests/test_readme_example.py::printed",
        ['main(["resnet_step.py"])'],
        "on the resnet18 script of docs/traces.md, through python -m traces' own main()",
    ),
    ".venv/bin/python scenarios/backward.py --trace --native": (
        "tests/test_below_python.py::test_native_from_the_command_line_shows_the_cpp_path",
        ['from scenarios.backward import main', 'main(["--trace", "--native"])'],
        "its main with the same arguments, in the test's own process",
    ),
    ".venv/bin/python -m traces.gdb --op aten::mul.Tensor scenarios/backward.py": (
        "tests/test_gdb.py::test_gdb_stops_in_the_mul_kernel_of_the_backward_scenario_called_from_python",
        ['"-m", "traces.gdb", "--batch", "--op", "aten::mul.Tensor", "scenarios/backward.py"'],
        "with --batch, which prints the stack and ends instead of leaving you at the (gdb) prompt; "
        "skipped where gdb is not installed",
    ),
    ".venv/bin/python scenarios/ddp.py --trace": (
        "tests/test_ddp.py::test_every_rank_stops_at_breakpoints_in_the_scenario_and_in_ddp_forward",
        ['configuration["args"][:3] == ["--trace", "--ranks", "2"]'],
        "as its launch configuration runs it, under the debugger: --trace --ranks 2 --timeout 1800",
    ),
    ".venv/bin/torchrun --nproc-per-node 2 scenarios/ddp.py --trace": (
        "tests/conftest.py::torchrun_ddp",
        ['[str(torchrun), "--nproc-per-node", "2", "--master-port", port, str(script), "--trace", "--save-trace", "out"]'],
        "on a free port instead of 29500 (tests run side by side), saving the traces too (the fixture that "
        "test_torchrun_starts_the_ranks_as_the_readme_says, the trace tests and traced_run(\"ddp\") read)",
    ),
    ".venv/bin/python -m debugpy --listen 127.0.0.1:5678 --wait-for-client scenarios/backward.py --trace": (
        "tests/test_debug_session.py::test_attach_shows_tensors_and_answers_at_once_too",
        ['"-m", "debugpy", "--listen", f"127.0.0.1:{port}", "--wait-for-client"'],
        "on a free port and a script of its own, attached to as the attach configuration does",
    ),
    ".venv/bin/python scenarios/quickstart.py": (
        "tests/test_quickstart.py::test_the_script_end_to_end",
        ['"scenarios/quickstart.py", "--epochs", "1", "--limit", "128"'],
        "one epoch of 128 images: the default run trains 5 epochs of 60000 (about 40 s)",
    ),
    ".venv/bin/python scenarios/quickstart.py --epochs 1 --limit 10000 --lr 0.05": (
        "tests/test_quickstart.py::test_the_readmes_quick_run_is_clearly_above_chance",
        ["quickstart(epochs=1, limit=10000, lr=0.05"],
        "the scenario's function with the same options, in the test's process",
    ),
}

# The README's two Quick start commands are what .ci/run runs on a fresh environment.
RUN_BY_CI = [
    'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python scenarios/backward.py --trace',
    ".venv/bin/python -m pytest",
]

# Commands shown but not run by the tests, and why.
NOT_RUN = {
    ".venv/bin/python -m pytest -n 0 tests/test_backward.py": "the suite itself, one file of it; .ci/run runs the whole",
    ".venv/bin/python scenarios/_record.py backward": (
        "rewrites traces/recorded/ in the repository; tests/test_recorded_traces.py compares a fresh "
        "run of every scenario with what it recorded, and tests/test_faults.py runs its --help"
    ),
}


def every_command() -> dict[str, list[str]]:
    """Each shell command shown, with the pages that show it."""
    shown: dict[str, list[str]] = {}
    for path in pages():
        for command in shell_commands(path.read_text(encoding="utf-8")):
            shown.setdefault(command, []).append(str(path.relative_to(ROOT)))
    return shown


def function_source(test_id: str) -> str:
    file, _, name = test_id.partition("::")
    source = (ROOT / file).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(source, node)
    raise AssertionError(f"{test_id}: no such function")


def test_every_shell_command_shown_is_run_by_a_test_or_says_why_not():
    shown = every_command()
    accounted = set(RUN_BY_A_TEST) | set(RUN_BY_CI) | set(NOT_RUN)
    assert {command: pages for command, pages in shown.items() if command not in accounted} == {}
    assert accounted - set(shown) == set()  # nothing listed here that no page shows any longer


@pytest.mark.parametrize("command", RUN_BY_A_TEST)
def test_the_test_named_for_a_command_runs_it(command):
    test_id, fragments, _ = RUN_BY_A_TEST[command]
    source = function_source(test_id)
    assert [fragment for fragment in fragments if fragment not in source] == []


def test_ci_runs_the_readmes_quick_start_commands_as_written():
    quick_start = page("README.md").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert shell_commands(quick_start) == RUN_BY_CI
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [command for command in RUN_BY_CI if command not in ci_lines] == []


def test_the_readme_is_a_front_page_under_250_lines():
    assert len(page("README.md").splitlines()) <= 250


@pytest.mark.parametrize("path", pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_and_heading(path):
    assert broken_links(path) == []


def test_a_broken_link_or_heading_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Stepping into `optimizer.step()`\n")
    written = tmp_path / "page.md"
    written.write_text(
        "# Page\n\n[fine](other.md#stepping-into-optimizerstep) [here](#page) [web](https://example.com/x)\n"
        "[gone](missing.md) [no heading](other.md#no-such) [not here](#nowhere)\n"
        "```text\n[in code](not_checked.md)\n```\n"
    )
    assert broken_links(written) == [
        "missing.md: no such file",
        "other.md#no-such: no heading #no-such in other.md",
        "#nowhere: no heading #nowhere in page.md",
    ]


def test_anchors_are_githubs():
    assert slug("Stepping into `optimizer.step()`") == "stepping-into-optimizerstep"
    assert slug("Tracing your own code") == "tracing-your-own-code"
    assert anchors("# A\n## B: c\n## B: c\n```\n# not a heading\n```\n") == {"a", "b-c", "b-c-1"}


def readme_scenario_rows() -> dict[str, list[str]]:
    rows = {}
    for line in page("README.md").splitlines():
        if found := re.match(r"\| \[`(\w+)\.py`\]\(docs/scenarios\.md#\w+\) \|", line):
            rows[found.group(1)] = [cell.strip() for cell in line.strip("|").split(" | ")]
    return rows


def test_every_scenario_has_one_line_in_the_readme_with_its_launch_configuration():
    by_program = {
        Path(config["program"]).stem: config["name"]
        for config in launch_configurations()
        if config.get("program", "").startswith("${workspaceFolder}/scenarios/")
    }
    rows = readme_scenario_rows()
    assert sorted(rows) == sorted(scenario_names())
    assert {name: row[2] for name, row in rows.items()} == {name: f'"{by_program[name]}"' for name in rows}
    assert [name for name, row in rows.items() if len(row[1]) > 110] == []  # the lesson in a phrase


def test_every_scenario_has_its_section_in_docs_scenarios():
    text = page("scenarios.md")
    for name in scenario_names():
        section = text.split(f"\n## {name}.py\n", 1)[1].split("\n## ", 1)[0]
        assert f"[`scenarios/{name}.py`](../scenarios/{name}.py)" in section
        assert "**The lesson.**" in section and "**In the debugger.**" in section


def test_contributings_main_block_is_the_unsqueeze_scenarios_own():
    [shown] = [block for block in code_blocks(page("CONTRIBUTING.md"), "python") if "run_scenario(" in block]
    assert shown in (ROOT / "scenarios" / "unsqueeze.py").read_text(encoding="utf-8")


def test_the_schema_version_the_trace_page_names_is_the_one_written():
    from traces import Trace

    assert f"schema (`schema_version` {Trace('x', '2', 'cpu').schema_version}) is documented" in page("traces.md")
