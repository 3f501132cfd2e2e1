"""The data-parallel lesson (scenarios/ddp.py): DDP on torch.distributed, gloo on CPU.

One run of docs/ddp.md's ``torchrun --nproc-per-node 2 scenarios/ddp.py --trace`` (with
``--save-trace out``; tests/conftest.py's ``torchrun_ddp``) is shared by most tests here and by
the trace tests of every scenario: each rank's facts are in its trace's JSON, its narrative
and its trace on stdout. The script's own launcher (``python scenarios/ddp.py --ranks 2``)
runs to its end in the debugger's configuration, and is stopped by Ctrl-C and by a killed
rank below. The lesson function itself also runs here, in this process, as a world of one rank.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.distributed.launcher.api as launcher_api
from conftest import ROOT
from dap_client import DebugSession, first_body_line
from test_debug_session import scenario_line
from torch.nn.parallel import DistributedDataParallel
from vscode_files import scenario_configuration, substitute

import scenarios._ctrl_c
import traces._starting
from scenarios import ddp
from scenarios._runner import run_scenario
from scenarios._ranks import recorded_trace_names, without_ranks_option

SCRIPT = ROOT / "scenarios" / "ddp.py"
WAIT = 300  # seconds; two processes importing torch on a busy machine


# The tests that read the two ranks' run go to one worker, so that it runs once (pytest --dist loadgroup),
# with the tests of tests/test_command_line.py and tests/test_recorded_traces.py that read the same run;
# the others here start processes of their own, and go to whichever worker is free.
reads_the_torchrun_run = pytest.mark.xdist_group("traced_run")


@pytest.fixture(scope="module")
def two_ranks(torchrun_ddp):
    """docs/ddp.md's torchrun command (tests/conftest.py): what it printed, and each rank's saved trace."""
    run, folder = torchrun_ddp
    traces = {}
    for rank in (0, 1):
        path = folder / "out" / f"ddp_rank{rank}.json"
        traces[rank] = json.loads(path.read_text()) if path.exists() else None
    return run, traces


def facts_of(two_ranks, rank: int) -> ddp.DDPFacts:
    return ddp.DDPFacts(**two_ranks[1][rank]["facts"])


@reads_the_torchrun_run
def test_the_tests_sharing_the_run_stay_on_one_worker(request):
    """Under the README's `pytest` (-n auto --dist loadgroup) the group mark keeps the tests that
    read the run on one worker, so the two ranks run once; pytest 9 with pytest-xdist 3.8 ignored it."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        assert request.node.nodeid.endswith("@traced_run")
    else:
        assert request.node.get_closest_marker("xdist_group").args == ("traced_run",)


@reads_the_torchrun_run
def test_two_ranks_run_and_each_saves_its_own_trace(two_ranks):
    run, traces = two_ranks
    assert (run.returncode, run.stderr) == (0, "")
    assert traces[0]["scenario"] == "ddp_rank0" and traces[1]["scenario"] == "ddp_rank1"
    assert [facts_of(two_ranks, rank).rank for rank in (0, 1)] == [0, 1]


@reads_the_torchrun_run
def test_each_rank_prints_what_it_found_in_turn(two_ranks):
    run, _ = two_ranks
    printed = [line for line in run.stdout.splitlines() if line.startswith("[rank")]
    expected = [*ddp.narrate(facts_of(two_ranks, 0)), *ddp.narrate(facts_of(two_ranks, 1))]
    assert printed == expected  # rank 0's lines, then rank 1's: never mixed
    lines = run.stdout.splitlines()
    saved = [lines[number + 1].strip() for number, line in enumerate(lines) if line == "Saved the trace:"]
    assert saved == ["out/ddp_rank0.json", "out/ddp_rank1.json"]


@reads_the_torchrun_run
def test_the_process_group_is_gloo_on_this_machine_only(two_ranks):
    for rank in (0, 1):
        facts = facts_of(two_ranks, rank)
        assert (facts.world_size, facts.backend, facts.store_host) == (2, "gloo", "127.0.0.1")
    assert "store on 127.0.0.1" in two_ranks[0].stdout


@reads_the_torchrun_run
def test_ddp_broadcasts_rank_0s_parameters_at_construction(two_ranks):
    facts = facts_of(two_ranks, 1)
    before, after = facts.first_weights_before_ddp, facts.first_weights_after_ddp
    assert before[0] != before[1]  # each rank started from weights of its own
    assert after == [before[0], before[0]]  # and now holds rank 0's
    assert facts_of(two_ranks, 0).first_weights_after_ddp == after


@reads_the_torchrun_run
def test_buckets_are_all_reduced_while_backward_still_runs(two_ranks):
    for rank in (0, 1):
        facts = facts_of(two_ranks, rank)
        assert facts.buckets == [["2.weight", "2.bias"], ["0.weight", "0.bias"]]  # the last layer's first
        events = facts.backward_events
        assert events.index("all-reduce bucket 0: 2.weight, 2.bias") < events.index("gradient ready: 0.weight")
        assert events[-1] == "all-reduce bucket 1: 0.weight, 0.bias"
        assert sorted(events) == sorted(
            [f"gradient ready: {name}" for name in ("0.weight", "0.bias", "2.weight", "2.bias")]
            + ["all-reduce bucket 0: 2.weight, 2.bias", "all-reduce bucket 1: 0.weight, 0.bias"]
        )


@reads_the_torchrun_run
def test_every_rank_holds_the_gradient_of_the_whole_batch(two_ranks):
    for rank in (0, 1):
        facts = facts_of(two_ranks, rank)
        assert facts.grads_equal_across_ranks is True
        # (g0 + g1) / 2 against the mean over all samples at once: the same sum, in another order.
        assert 0 < facts.max_difference_from_one_process < 1e-6
        assert facts.bitwise_equal_to_one_process is False
    assert facts_of(two_ranks, 0).max_difference_from_one_process == facts_of(two_ranks, 1).max_difference_from_one_process


@reads_the_torchrun_run
def test_no_sync_keeps_gradients_local_until_the_next_synchronised_backward(two_ranks):
    for rank in (0, 1):
        facts = facts_of(two_ranks, rank)
        assert facts.local_grads_differ_in_no_sync is True
        assert facts.no_sync_then_sync_equal_across_ranks is True
        assert 0 <= facts.max_difference_after_no_sync < 1e-6


@reads_the_torchrun_run
def test_a_rank_that_skips_backward_leaves_the_others_waiting_until_the_timeout(two_ranks):
    waited = f"Timed out waiting {ddp.SKIP_TIMEOUT * 1000}ms for recv operation to complete"
    assert facts_of(two_ranks, 0).skipped_backward_error == waited
    assert facts_of(two_ranks, 1).skipped_backward_error.startswith("none: it skipped backward")


@reads_the_torchrun_run
def test_a_parameter_without_gradient_stops_the_next_forward_on_every_rank(two_ranks):
    for rank in (0, 1):
        facts = facts_of(two_ranks, rank)
        assert facts.unused_parameter_error == (
            "Expected to have finished reduction in the prior iteration before starting a new one."
        )
        assert facts.unused_parameter_grad_with_detection is None  # found, skipped, and the step ran


@reads_the_torchrun_run
def test_each_ranks_trace_holds_the_all_reduce_of_each_bucket_in_backward(two_ranks):
    for rank in (0, 1):
        trace = two_ranks[1][rank]
        all_reduces = [op for op in trace["ops"] if op["op"] == "c10d::allreduce_"]
        # bucket 0: 2.weight [2, 8] and 2.bias [2], 18 numbers; bucket 1: 0.weight [8, 4] and 0.bias [8], 40
        assert [(op["phase"], op["inputs"][0]["shape"]) for op in all_reduces] == [("backward", [18]), ("backward", [40])]
        broadcasts = [op for op in trace["ops"] if op["op"] == "c10d::broadcast_" and op["inputs"][0]["dtype"] == "float32"]
        assert broadcasts[0]["inputs"][0]["shape"] == [58]  # DDP(model): every parameter, 32 + 8 + 16 + 2
        names = {node["name"] for node in trace["graph"]["nodes"]}
        assert {"MseLossBackward0", "AddmmBackward0"} <= names


@reads_the_torchrun_run
def test_torchrun_starts_the_ranks_as_the_readme_says(two_ranks):
    run, _ = two_ranks
    assert (run.returncode, run.stderr) == (0, "")
    lines = run.stdout.splitlines()
    assert lines[0] == "[rank 0] rank 0 of world_size 2, backend gloo, store on 127.0.0.1"
    assert "[rank 1] every .grad equal on every rank after backward: True" in lines


def test_the_lesson_runs_in_this_process_as_a_world_of_one(monkeypatch):
    store = dist.TCPStore("127.0.0.1", 0, 1, True)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # init_process_group replaces it: put it back after
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    torch.manual_seed(2**64 - 1)  # the largest --seed
    try:
        facts = ddp.data_parallel()
    finally:
        dist.destroy_process_group()
    assert (facts.rank, facts.world_size, facts.backend) == (0, 1, "gloo")
    assert facts.first_weights_after_ddp == facts.first_weights_before_ddp
    assert facts.buckets == [["2.weight", "2.bias"], ["0.weight", "0.bias"]]
    assert facts.local_grads_differ_in_no_sync is False  # one rank: nobody to differ from
    assert facts.skipped_backward_error.startswith("none: it skipped backward")


def test_the_ranks_option_is_the_launchers_alone():
    assert without_ranks_option(["--ranks", "3", "--trace", "--ranks=4", "--seed", "1"]) == ["--trace", "--seed", "1"]
    assert recorded_trace_names("ddp", 2) == ("ddp_rank0", "ddp_rank1") == ddp.RECORDED_TRACES


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ranks", "0"], "argument --ranks: 0 is too small"),
        (["--ranks", "65"], "argument --ranks: 65 is too large"),
        (["--timeout", "0"], "argument --timeout: 0 is too small"),
        (["--ranks", "two"], "argument --ranks: 'two' is not a whole number"),
    ],
)
def test_a_bad_option_is_one_line_before_any_rank_starts(argv, message, monkeypatch, capsys):
    # In this process, as the launcher's main(argv): a process per bad option would only import torch again.
    monkeypatch.setattr(launcher_api, "elastic_launch", lambda *args, **kwargs: pytest.fail("a rank was started"))
    with pytest.raises(SystemExit) as exit_info:
        ddp.main(argv)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and out == ""
    assert err.startswith(f"scenarios/ddp.py: error: {message}") and err.count("\n") == 1


def test_a_bad_option_from_the_shell_is_one_line_and_status_2():
    run = subprocess.run([sys.executable, str(SCRIPT), "--ranks", "0"], capture_output=True, text=True, timeout=WAIT)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("scenarios/ddp.py: error: argument --ranks: 0 is too small") and run.stderr.count("\n") == 1


def test_the_benchmark_refuses_a_bad_value_in_one_line():
    run = subprocess.run(
        [sys.executable, "benchmarks/ddp_speed.py", "--runs", "0"], cwd=ROOT, capture_output=True, text=True, timeout=WAIT
    )
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "benchmarks/ddp_speed.py: error: argument --runs: 0 is too small; it must be 1 or more (see --help)\n"


# -- faults: nothing is left behind -------------------------------------------------------


def ranks_of(launcher: subprocess.Popen) -> list[int]:
    """The rank processes the launcher started (its children), rank 0's first, once both exist."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and launcher.poll() is None:
        children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
        ranks = {rank_of(int(pid)): int(pid) for pid in children}
        if set(ranks) == {0, 1}:
            return [ranks[0], ranks[1]]
        time.sleep(0.05)
    raise AssertionError("the launcher never started two ranks")


def rank_of(pid: int) -> int | None:
    """The rank a process runs as; None until it runs the rank's program (a child between fork
    and exec still has its parent's environment, without RANK)."""
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone already
        return None
    ranks = [int(entry[5:]) for entry in environment if entry.startswith(b"RANK=")]
    return ranks[0] if ranks else None


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def start_launcher(tmp_path, *python_options: str) -> subprocess.Popen:
    # A new session, like a terminal's: Ctrl-C is sent to the whole process group.
    return subprocess.Popen(
        [sys.executable, *python_options, str(SCRIPT), "--ranks", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_ctrl_c_stops_every_rank_with_one_line_each_and_status_130(tmp_path):
    # -X importtime, which the launcher passes on to the ranks, marks when each process has
    # taken over Ctrl-C (scenarios._ctrl_c): before that, Python itself is still starting.
    launcher = start_launcher(tmp_path, "-X", "importtime")
    said = []
    ready = threading.Event()

    def read_stderr():
        for line in launcher.stderr:
            said.append(line)
            if sum(line.rstrip().endswith("| scenarios._ctrl_c") for line in said) == 3:  # launcher and 2 ranks
                ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert ready.wait(WAIT), "".join(said[-5:])
    ranks = ranks_of(launcher)
    os.killpg(launcher.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    launcher.wait(WAIT)
    reader.join(WAIT)
    assert launcher.returncode == 130
    lines = [line.rstrip("\n") for line in said if not line.startswith("import time:")]
    assert lines[-1] == "scenarios/ddp.py: interrupted (Ctrl-C); every rank was stopped"
    allowed = {
        "scenarios/ddp.py: interrupted (Ctrl-C) while starting; nothing was done",
        "scenarios/ddp.py: interrupted (Ctrl-C); no file was left half-written",
        "scenarios/ddp.py: interrupted (Ctrl-C); nothing was left half-written",
    }
    assert set(lines[:-1]) <= allowed and len(lines) <= 3 and said[-1].endswith("\n")
    assert not any(alive(pid) for pid in ranks)
    assert list(tmp_path.iterdir()) == []


class EachWrite(io.StringIO):
    """A stderr that notes each write() made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_each_ranks_line_is_written_whole_so_that_two_ranks_never_mix_theirs(monkeypatch):
    """Both ranks, stopped by one Ctrl-C, print at the same moment on the same terminal. print()
    writes a line and its newline apart, so two lines could come out as 'line1line2' and an
    empty line; the runner, the launcher and the lesson write each line in one go."""
    stderr = EachWrite()
    monkeypatch.setattr(sys, "stderr", stderr)
    print("a line", file=sys.stderr)
    assert stderr.writes == ["a line", "\n"]  # why they do not use print()
    stderr.writes.clear()
    scenarios._ctrl_c.say("scenarios/ddp.py: interrupted (Ctrl-C) while starting; nothing was done")
    traces._starting.say("python -m traces: interrupted (Ctrl-C) while starting; nothing was done")
    assert stderr.writes == [
        "scenarios/ddp.py: interrupted (Ctrl-C) while starting; nothing was done\n",
        "python -m traces: interrupted (Ctrl-C) while starting; nothing was done\n",
    ]
    stderr.writes.clear()

    def interrupted(**options):
        raise KeyboardInterrupt

    assert run_scenario("ddp", interrupted, narrate=lambda facts: [], doc="", argv=[]) == 130
    assert stderr.writes == ["scenarios/ddp.py: interrupted (Ctrl-C); no file was left half-written\n"]


def test_a_rank_killed_outright_ends_the_others_with_one_line(tmp_path):
    launcher = start_launcher(tmp_path)
    first, second = ranks_of(launcher)
    os.kill(second, signal.SIGKILL)
    out, err = launcher.communicate(timeout=WAIT)
    assert launcher.returncode == 1
    lines = err.splitlines()
    assert lines[-1] == "scenarios/ddp.py: error: rank 1 was killed by SIGKILL; the other ranks were stopped"
    # rank 0 may have noticed first (a collective whose partner is gone): one line of its own
    assert all(line.startswith("scenarios/ddp.py: error: rank 0: ") for line in lines[:-1]) and len(lines) <= 2
    assert not alive(first) and not alive(second)


# -- every rank in the debugger -------------------------------------------------------------


def test_every_rank_stops_at_breakpoints_in_the_scenario_and_in_ddp_forward(tmp_path):
    """F5 on "Scenario: data-parallel, every rank": the launcher and both ranks are debugged;
    each rank stops on its own ``loss.backward()`` and in torch's ``DistributedDataParallel.forward``.
    The script's own launcher (``--ranks 2``) runs to its end, and leaves no log folder behind."""
    configuration = substitute(scenario_configuration("ddp"))
    assert configuration["subProcess"] is True and configuration["args"][:3] == ["--trace", "--ranks", "2"]
    scenario_path, backward_line = scenario_line(ddp.data_parallel_on_this_rank, "loss.backward()")
    forward_path, forward_line = first_body_line(DistributedDataParallel.forward)
    (tmp_path / "tmp").mkdir()  # the temporary folder of the launcher and the ranks
    with DebugSession() as session:
        session.initialize()
        launch = session.launch({**configuration, "env": {"TMPDIR": str(tmp_path / "tmp")}})
        session.request("configurationDone")
        session.response(launch)

        ranks = []
        for _ in range(2):  # VSCode opens a session for each subprocess: here, each rank
            rank = session.subprocess_session()
            rank.set_breakpoints(forward_path, [forward_line])
            rank.set_breakpoints(scenario_path, [backward_line])
            rank.request("configurationDone")
            ranks.append(rank)
        for rank in ranks:
            stopped = rank.wait_for_event("stopped")
            frame = rank.top_frame(stopped["body"]["threadId"])
            assert (frame["name"], frame["line"]) == ("forward", forward_line)
            assert Path(frame["source"]["path"]).resolve() == Path(forward_path).resolve()
            rank.set_breakpoints(forward_path, [])  # forward runs again later: stop there once
            rank.request("continue", {"threadId": stopped["body"]["threadId"]})
        seen = set()
        for rank in ranks:
            stopped = rank.wait_for_event("stopped")
            frame = rank.top_frame(stopped["body"]["threadId"])
            assert (frame["name"], frame["line"]) == ("data_parallel_on_this_rank", backward_line)
            seen.add(int(rank.evaluate("dist.get_rank()", frame["id"])))
            rank.set_breakpoints(scenario_path, [])
            rank.request("continue", {"threadId": stopped["body"]["threadId"]})
        assert seen == {0, 1}
        assert session.run_to_end() == 0
        output = session.terminal_output()
        assert "[rank 0] every .grad equal on every rank after backward: True" in output
        assert "[rank 1] every .grad equal on every rank after backward: True" in output
        # --trace: each rank prints its trace (tests/test_command_line.py reads the torchrun run's)
        for view in ("Autograd graph", "Backward: the order in which the engine ran the nodes", "ATen ops: what ran below autograd"):
            assert output.count(view) == 2, view
    assert list((tmp_path / "tmp").glob("torchelastic_*")) == []  # no log folder of the launcher's
