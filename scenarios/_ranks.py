"""Start a scenario as N processes, one per rank, the way torchrun does: ``--ranks N``.

``python scenarios/ddp.py --ranks 2`` runs torch's own launcher (torchrun's elastic
agent, ``torch.distributed.launcher``) in this process, which starts the script N
times with the environment torch.distributed reads (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT, ...). The store and every socket listen on 127.0.0.1 only.

Ending, in one line whatever happens:

- a rank that fails, or is killed, ends the others at once (torchrun's rule), and
  this says which rank and how (status 1);
- Ctrl-C reaches every rank (they share the terminal's process group): each stops,
  the agent ends what is left, and this prints one line (status 130).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import uuid

from scenarios._ctrl_c import INTERRUPTED, say
from scenarios._runner import parse_arguments


def under_torchrun() -> bool:
    """True in a rank: torchrun (or --ranks) described the process group in the environment."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def recorded_trace_names(name: str, ranks: int) -> tuple[str, ...]:
    """The traces a run on ``ranks`` ranks saves: one per rank, ``<name>_rank<r>``."""
    return tuple(f"{name}_rank{rank}" for rank in range(ranks))


def interrupt_once(signum, frame) -> None:
    """Ctrl-C reaches a rank twice: from the terminal, then from the launcher that stops
    every rank. The first raises KeyboardInterrupt; the second must not cut its clean-up short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def without_ranks_option(argv: list[str]) -> list[str]:
    """The arguments for each rank: everything but --ranks N (torchrun says how many)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--ranks":
            skip = True
        elif not arg.startswith("--ranks="):
            kept.append(arg)
    return kept


def start_torchrun(
    name: str, script: str, argv: list[str], parser: argparse.ArgumentParser, default_ranks: int
) -> int:
    """Check the arguments, then run ``script`` on ``--ranks`` processes and wait for all of them.

    Until the ranks start, Ctrl-C ends this process at once (scenarios._ctrl_c: nothing has
    been done); torch's launcher takes it over as it starts them, and stops them all.
    """
    args = parse_arguments(parser, argv)  # a bad argument: one line, status 2, before any rank starts
    ranks = args.ranks or default_ranks
    prog = f"scenarios/{name}.py"

    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    quiet_agent()
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=ranks,
        run_id=str(uuid.uuid4()),
        rdzv_backend="static",
        rdzv_endpoint=f"127.0.0.1:{free_port()}",
        rdzv_configs={"rank": 0},
        max_restarts=0,
        monitor_interval=0.1,
        local_addr="127.0.0.1",
        logs_specs=DefaultLogsSpecs(log_dir=os.devnull),  # the ranks write to this terminal, and no log folder is left
    )
    saved_environment = os.environ.copy()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun sets it: N processes share the cores
    try:
        elastic_launch(config, entrypoint=sys.executable)(*interpreter_options(), script, *without_ranks_option(argv))
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()  # the first to fail: the others were stopped after it
        say(f"{prog}: error: rank {rank} {how_it_ended(failure.exitcode)}; the other ranks were stopped")
        return INTERRUPTED if failure.exitcode == INTERRUPTED else 1
    except (SignalException, KeyboardInterrupt):
        say(f"{prog}: interrupted (Ctrl-C); every rank was stopped")
        return INTERRUPTED
    finally:
        os.environ.clear()
        os.environ.update(saved_environment)
    return 0


def quiet_agent() -> None:
    """The agent logs every step of its work; a learner needs only how it ended (said below)."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def interpreter_options() -> list[str]:
    """Python's own options that this process was started with (``-X importtime`` and the like)."""
    return [f"-X{key}" if value is True else f"-X{key}={value}" for key, value in sys._xoptions.items()]


def how_it_ended(exitcode: int) -> str:
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    if exitcode == INTERRUPTED:
        return "was interrupted (Ctrl-C)"
    return f"exited with status {exitcode}"
