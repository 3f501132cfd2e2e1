"""The runs that many tests share are made once per session only if those tests run on one
worker: pytest-xdist's ``--dist loadgroup`` (pyproject.toml) sends the tests of one
``xdist_group`` to one worker. A test that reads a shared run without its group still passes,
but its worker makes the run again (two ranks, a debug session, a model's trace): this finds it.
"""

import pytest
from conftest import EVERY_TEST

# A session fixture that makes a run, and the group of the tests that read it.
GROUP_OF_SHARED_RUN = {
    "traced_run": "traced_run",  # tests/conftest.py: each scenario's --trace --save-trace run
    "torchrun_ddp": "traced_run",  # tests/conftest.py: the two ranks, which traced_run("ddp") is too
    "model_traces": "model_traces",  # tests/conftest.py: resnet18's and densenet121's traces
    "shared_timings": "backward_runs",  # tests/conftest.py: the benchmarks' timed runs of backward.py
    "backward_session": "backward_session",  # tests/test_debug_session.py: one debug session
    "current_file_session": "current_file_session",  # tests/test_debug_session.py: another
}


def groups_missing(items) -> list[str]:
    """'<test>: reads <fixture> but is not in group <group>' for each test that would run it again."""
    missing = []
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        group = marker.args[0] if marker else None
        for fixture in getattr(item, "fixturenames", ()):
            wanted = GROUP_OF_SHARED_RUN.get(fixture)
            if wanted is not None and group != wanted:
                missing.append(f"{item.nodeid}: reads {fixture} but is not in group {wanted}")
    return missing


def test_every_test_that_reads_a_shared_run_is_in_its_group(request):
    assert groups_missing(request.config.stash[EVERY_TEST]) == []


def test_a_test_outside_its_group_is_found(pytester):
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def traced_run():
            return "the run"
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.xdist_group("traced_run")
        def test_in_its_group(traced_run):
            pass

        def test_outside(traced_run):
            pass
        """
    )
    items, _ = pytester.inline_genitems("-p", "no:xdist")
    assert groups_missing(items) == [
        "test_a_test_outside_its_group_is_found.py::test_outside: reads traced_run but is not in group traced_run"
    ]


pytest_plugins = ["pytester"]
