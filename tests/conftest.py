"""Shared helpers for the tests: where the project lives and which scenarios it has."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scenarios._record import ROOT, scenario_names

__all__ = [
    "EVERY_TEST", "ROOT", "ModelTrace", "ScenarioRun", "main_once", "recorded_traces", "run_main", "run_script",
    "scenario_module", "scenario_names", "trace_names",
]


def pytest_configure(config) -> None:
    """In a pytest-xdist worker, torch computes with one thread, and so do the processes it
    starts (OMP_NUM_THREADS, unless set already): `-n auto` starts one worker per core, and
    torch's threads on cores that are busy wait for each other at every operator, many times
    slower (a densenet121's trace: 12 s with two threads on two busy cores, 1.5 s with one;
    scenarios/quickstart.py's choose_threads and torchrun choose one thread for the same reason)."""
    if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"  # for the processes it starts; torch has loaded already
        torch.set_num_threads(1)


EVERY_TEST = pytest.StashKey[list]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Keep every test collected, before -k or -m leave some out (tests/test_shared_runs.py reads them)."""
    config.stash[EVERY_TEST] = list(items)


def scenario_module(name: str):
    return importlib.import_module(f"scenarios.{name}")


def trace_names(name: str) -> tuple[str, ...]:
    """The traces a scenario saves: its own, or one per rank (scenarios/ddp.py)."""
    return getattr(scenario_module(name), "RECORDED_TRACES", (name,))


def recorded_traces() -> list[str]:
    """Every trace in traces/recorded/, scenario by scenario."""
    return [trace for name in scenario_names() for trace in trace_names(name)]


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a scenario script the way a person does: python scenarios/<name>.py ..."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def fashion_data(tmp_path_factory) -> Path:
    """A data folder with the FashionMNIST stand-in in it, written once per test session."""
    from scenarios._fashion import STANDIN_FOLDER, write_standin

    data = tmp_path_factory.mktemp("data")
    write_standin(data / STANDIN_FOLDER)
    return data


def keeping_the_facts(run_scenario, returned: list):
    """``run_scenario`` that also appends the facts the lesson returned to ``returned``."""

    def run_keeping_the_facts(scenario, lesson, narrate, **kwargs):
        def lesson_kept(**options):
            returned.append(lesson(**options))
            return returned[-1]

        return run_scenario(scenario, lesson_kept, narrate, **kwargs)

    return run_keeping_the_facts


def main_once(name: str, argv: list[str]) -> tuple[object, list[str]]:
    """``run_main`` for a fixture that outlives one test (no monkeypatch or capsys there): the
    facts its lesson returned and the lines it printed, scenarios/<name>.py's main(argv) run once."""
    module = scenario_module(name)
    returned: list = []
    run_scenario = module.run_scenario
    module.run_scenario = keeping_the_facts(run_scenario, returned)
    try:
        with printed() as out:
            status = module.main(argv)
    finally:
        module.run_scenario = run_scenario
    assert status == 0, out.getvalue()
    [facts] = returned
    return facts, out.getvalue().splitlines()


def run_main(name: str, argv: list[str], monkeypatch, capsys) -> tuple[object, list[str]]:
    """Run scenarios/<name>.py's main(argv) in this process: the facts its lesson returned,
    and the lines it printed (the narrative, then the trace when asked for).

    In-process, to spare a torch import per run; what the script prints is the same.
    """
    module = scenario_module(name)
    returned: list = []
    monkeypatch.setattr(module, "run_scenario", keeping_the_facts(module.run_scenario, returned))
    capsys.readouterr()  # start from nothing printed
    assert module.main(argv) == 0
    [facts] = returned
    return facts, capsys.readouterr().out.splitlines()


@dataclass
class ScenarioRun:
    """One run of ``python scenarios/<name>.py --trace --save-trace FOLDER`` (with the quick options)."""

    out: str  # what it printed: the narrative and the trace (and its ranks', for ddp)
    folder: Path  # where it saved its trace (one per rank for ddp)

    def saved(self, trace_name: str) -> dict:
        return json.loads((self.folder / f"{trace_name}.json").read_text())


@contextlib.contextmanager
def printed() -> Iterator[io.StringIO]:
    """What is printed meanwhile, by this process and by the processes it starts (their file
    descriptor 1 is this one's): the text is in the StringIO given, once the block ends."""
    text = io.StringIO()
    sys.stdout.flush()
    with tempfile.TemporaryFile(mode="w+", buffering=1) as file:
        kept = os.dup(1)
        os.dup2(file.fileno(), 1)
        try:
            with contextlib.redirect_stdout(file):
                yield text
        finally:
            file.flush()
            os.dup2(kept, 1)
            os.close(kept)
        file.seek(0)
        text.write(file.read())


@pytest.fixture(scope="session")
def traced_run(request, tmp_path_factory) -> Callable[[str], ScenarioRun]:
    """``traced_run(name)``: the scenario run once per test session with --trace and --save-trace,
    in this process (ddp's ranks are processes in any case: its run is ``torchrun_ddp``); every
    test that reads what such a run prints or saves shares it (tests/test_recorded_traces.py
    compares its traces, tests/test_command_line.py its views).
    Mark those tests ``@pytest.mark.xdist_group("traced_run")`` so that one worker runs them all."""
    from scenarios._record import DATA_SCENARIOS, quick_options

    runs: dict[str, ScenarioRun] = {}

    def run(name: str) -> ScenarioRun:
        if name == "ddp":  # its ranks are processes in any case: the torchrun run, shared with tests/test_ddp.py
            completed, folder = request.getfixturevalue("torchrun_ddp")
            return ScenarioRun(completed.stdout, folder / "out")
        if name not in runs:
            folder = tmp_path_factory.mktemp(f"traced_{name}")
            data = request.getfixturevalue("fashion_data") if name in DATA_SCENARIOS else folder
            argv = ["--trace", "--save-trace", str(folder), *quick_options(name, data, folder)]
            with printed() as out:
                status = scenario_module(name).main(argv)
            assert status == 0, out.getvalue()
            runs[name] = ScenarioRun(out.getvalue(), folder)
        return runs[name]

    return run


@pytest.fixture(scope="session")
def torchrun_ddp(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """docs/ddp.md's torchrun command, once per session: two ranks, each printing its trace and
    saving it into out/. tests/test_ddp.py reads its facts; ``traced_run("ddp")`` is this run.
    Mark the tests that read it ``@pytest.mark.xdist_group("traced_run")``."""
    from scenarios._ranks import free_port

    folder = tmp_path_factory.mktemp("ddp")
    torchrun = Path(sys.executable).parent / "torchrun"
    port = str(free_port())  # the command uses torchrun's default, 29500; tests run side by side
    script = ROOT / "scenarios" / "ddp.py"
    run = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", "--master-port", port, str(script), "--trace", "--save-trace", "out"],
        cwd=folder,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,  # two processes importing torch on a busy machine
    )
    return run, folder


@dataclass
class ModelTrace:
    """A torchvision model (random weights, seed 0) traced through forward and backward on one
    64x64 image, as `python -m traces` traces it: the trace, the model and its loss."""

    trace: object
    model: object
    loss: object


def trace_a_model(name: str) -> ModelTrace:
    import torch
    import torchvision

    import traces

    torch.manual_seed(0)
    with traces.record(name=name) as trace:
        model = getattr(torchvision.models, name)(weights=None)
        loss = model(torch.randn(1, 3, 64, 64)).sum()
        loss.backward()
    return ModelTrace(trace, model, loss)


@pytest.fixture(scope="session")
def model_traces() -> Callable[[str], ModelTrace]:
    """``model_traces(name)``: ``trace_a_model(name)``, once per test session (a densenet121 takes
    seconds). The tests only read what it holds. Mark the tests that use it
    ``@pytest.mark.xdist_group("model_traces")`` so that one worker traces each model once."""
    made: dict[str, ModelTrace] = {}

    def model_trace(name: str) -> ModelTrace:
        if name not in made:
            made[name] = trace_a_model(name)
        return made[name]

    return model_trace


@pytest.fixture(scope="session")
def shared_timings() -> Callable[[Callable[..., float]], Callable[..., float]]:
    """``shared_timings(wall_time)``: a benchmark's ``wall_time(argv, ...)`` that runs each command
    once per test session and gives the same seconds to every benchmark that times it (the quick
    modes of benchmarks/run.py and benchmarks/below_python.py both time `python
    scenarios/backward.py` and `... --trace`). A command with an environment of its own is
    always run. Mark the tests ``@pytest.mark.xdist_group("backward_runs")``."""
    seconds: dict[tuple[str, ...], float] = {}

    def shared(wall_time: Callable[..., float]) -> Callable[..., float]:
        def timed_once(argv: list[str], *args, **kwargs) -> float:
            if kwargs.get("env") is not None:
                return wall_time(argv, *args, **kwargs)
            if tuple(argv) not in seconds:
                seconds[tuple(argv)] = wall_time(argv, *args, **kwargs)
            return seconds[tuple(argv)]

        return timed_once

    return shared


# -- the formula index (traces/below/cache.py), for the tests of its cache -----------------


@pytest.fixture(scope="session")
def index_data() -> dict:
    """The installed torch's index as its cache holds it (built and cached first where there is
    none); tests only read it."""
    from traces.below import cache

    cache.installed_index()
    data = cache.read_cache(cache.cache_file(cache.cache_folder()))
    return data if data is not None else cache.build_index()


@pytest.fixture
def built(monkeypatch, index_data) -> list:
    """Count the builds, and serve the index without building it."""
    from traces.below import cache

    builds = []

    def build():
        builds.append(1)
        return json.loads(json.dumps(index_data))

    monkeypatch.setattr(cache, "build_index", build)
    return builds
