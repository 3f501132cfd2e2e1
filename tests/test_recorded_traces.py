"""traces/recorded/ holds every scenario's trace, and a fresh run still matches it.

When this fails after a torch upgrade, torch's behaviour changed: read the
differences, and if they are expected, regenerate with
`.venv/bin/python scenarios/_record.py`.
"""

import json

import pytest
from conftest import scenario_module, scenario_names

from scenarios._record import DATA_SCENARIOS, RECORDED, record_argv
from traces.compare import differences, order_violations, stable_view

SCENARIOS = scenario_names()


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_has_a_recorded_trace_and_picture(name):
    assert (RECORDED / f"{name}.json").is_file()
    assert (RECORDED / f"{name}.mmd").read_text().startswith("flowchart")
    assert "<svg" in (RECORDED / f"{name}.svg").read_text()


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_fresh_run_matches_the_recorded_trace(name, tmp_path, request, capsys):
    data = request.getfixturevalue("fashion_data") if name in DATA_SCENARIOS else tmp_path
    assert scenario_module(name).main(record_argv(name, tmp_path, data, tmp_path)) == 0
    recorded = json.loads((RECORDED / f"{name}.json").read_text())
    fresh = json.loads((tmp_path / f"{name}.json").read_text())
    assert fresh["schema_version"] == recorded["schema_version"] == 2
    found = differences(stable_view(recorded), stable_view(fresh))
    assert not found, f"{name}: the trace differs from traces/recorded/{name}.json:\n" + "\n".join(found)
    assert order_violations(fresh) == []


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
