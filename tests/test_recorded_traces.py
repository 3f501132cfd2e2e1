"""traces/recorded/ holds every scenario's trace, and a fresh run still matches it.

When this fails after a torch upgrade, torch's behaviour changed: read the
differences, and if they are expected, regenerate with
`.venv/bin/python scenarios/_record.py`.
"""

import copy
import json
import re

import pytest
from conftest import recorded_traces, scenario_names, trace_names

from scenarios._record import RECORDED
from scenarios.backward import backward_pass
from traces import Tracer
from traces.render.compare import differences, order_violations, stable_view
from traces.render.json_file import trace_to_dict
from traces.data.trace import SCHEMA_VERSION

SCENARIOS = scenario_names()


RECORDED_TRACES = recorded_traces()


def test_a_scenario_on_two_ranks_records_a_trace_per_rank():
    assert trace_names("ddp") == ("ddp_rank0", "ddp_rank1") and trace_names("backward") == ("backward",)


@pytest.mark.parametrize("name", RECORDED_TRACES)
def test_every_scenario_has_a_recorded_trace_and_picture(name):
    assert (RECORDED / f"{name}.json").is_file()
    assert (RECORDED / f"{name}.mmd").read_text().startswith("flowchart")
    assert "<svg" in (RECORDED / f"{name}.svg").read_text()
    assert (RECORDED / f"{name}.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.xdist_group("traced_run")
@pytest.mark.parametrize("name", SCENARIOS)
def test_a_fresh_run_matches_the_recorded_trace(name, traced_run):
    # The run tests/test_command_line.py reads too (tests/conftest.py): scenarios/_record.py
    # records with --save-trace alone, and --trace only prints what the same trace holds.
    run = traced_run(name)
    for trace in trace_names(name):
        recorded = json.loads((RECORDED / f"{trace}.json").read_text())
        fresh = run.saved(trace)
        assert fresh["schema_version"] == recorded["schema_version"] == SCHEMA_VERSION
        found = differences(stable_view(recorded), stable_view(fresh))
        assert not found, f"{trace}: the trace differs from traces/recorded/{trace}.json:\n" + "\n".join(found)
        assert order_violations(fresh) == []


def strings_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (dict, list)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from strings_in(item)


@pytest.mark.parametrize("name", RECORDED_TRACES)
def test_a_recorded_trace_names_no_path_of_the_machine_that_recorded_it(name):
    recorded = json.loads((RECORDED / f"{name}.json").read_text())
    absolute = re.compile(r"(^|[\s'\"(])(/|~/|[A-Za-z]:\\)\w")  # /home/..., ~/..., C:\...
    assert [text for text in strings_in(recorded) if absolute.search(text)] == []
    assert all(entry["path"].startswith("torch/") for entry in recorded["source"])


def test_differences_are_readable():
    recorded = {"facts": {"w_grad": 5.0}, "ops": ["aten::add.Tensor", "aten::mul.Tensor"]}
    fresh = {"facts": {"w_grad": 6.0}, "ops": ["aten::add.Tensor"]}
    assert differences(recorded, fresh) == [
        "facts.w_grad: recorded 5.0, now 6.0",
        "ops: recorded 2 items, now 1: ['aten::add.Tensor', 'aten::mul.Tensor'] -> ['aten::add.Tensor']",
    ]
    assert differences({"x": 1.0}, {"x": 1.0 + 1e-9}) == []


def test_order_violations_name_the_edge():
    trace = {
        "graph": {"edges": [{"source": "n0", "target": "n1"}]},
        "backward": [{"node": "n1", "order": 0}, {"node": "n0", "order": 1}],
    }
    assert order_violations(trace) == ["n1 ran (step 0) before n0 (step 1) fed it"]


@pytest.fixture(scope="module")
def backward_trace() -> dict:
    """The backward scenario's trace as its JSON reads back, from a run in this process."""
    tracer = Tracer()
    with tracer.recording():
        facts = backward_pass(tracer=tracer)
    return json.loads(json.dumps(trace_to_dict(tracer.trace("backward", "cpu", facts))))


def changed(trace: dict, change) -> dict:
    trace = copy.deepcopy(trace)
    change(trace)
    return trace


def mul_node(trace: dict) -> dict:
    return next(node for node in trace["graph"]["nodes"] if node["name"] == "MulBackward0")


@pytest.mark.parametrize(
    "change, reported",
    [
        (lambda t: t["facts"].update(w_grad=6.0), "facts.w_grad: recorded 5.0, now 6.0"),
        (lambda t: t["facts"].update(second_backward_error="no error"), "facts.second_backward_error: recorded"),
        (lambda t: mul_node(t).update(name="AddBackward0"), "graph.nodes"),
        (lambda t: mul_node(t)["saved"][0].update(version=1), "graph.nodes"),
        (lambda t: mul_node(t)["saved"][0].update(freed=False), "graph.nodes"),
        (lambda t: t["graph"]["edges"][0]["gradient"].update(values=7.0), "graph.edges[0].gradient.values"),
        (lambda t: t["backward"].pop(), "backward.nodes_run"),
        (lambda t: t["ops"].pop(), "ops."),
    ],
    ids=["fact", "fact message", "node name", "saved version", "saved freed", "edge gradient", "node run", "op"],
)
def test_compare_reports_a_change_in_what_a_rerun_must_reproduce(backward_trace, change, reported):
    found = differences(stable_view(backward_trace), stable_view(changed(backward_trace, change)))
    assert len(found) == 1 and found[0].startswith(reported), found


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.update(torch_version="0.0", device="mps"),
        lambda t: t.update(source=[{"function": "f", "path": "/elsewhere/f.py", "line": 1, "depth": 0, "calls": 1}]),
        lambda t: t["backward"].reverse(),  # the order: checked by order_violations instead
        lambda t: t["facts"].update(train_seconds=9.0, model_path="elsewhere", data="Data: elsewhere"),
    ],
    ids=["where it ran", "source view", "backward order", "timings and paths"],
)
def test_compare_leaves_out_what_depends_on_the_machine(backward_trace, change):
    assert differences(stable_view(backward_trace), stable_view(changed(backward_trace, change))) == []
