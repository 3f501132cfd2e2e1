"""Data-parallel training: DistributedDataParallel (DDP) on torch.distributed, one process per rank.

Run it as `torchrun --nproc-per-node 2 scenarios/ddp.py`, or `python scenarios/ddp.py`
(`--ranks N`, default 2), which starts torchrun for you. Every process (a rank) joins
one process group (backend gloo, on CPU; its store on 127.0.0.1) and holds a whole
copy of the model. `DDP(model)` broadcasts rank 0's parameters, so ranks that started
with different weights agree. Each rank runs forward and backward on its own share of
the batch; while backward still runs, DDP all-reduces the gradients bucket by bucket
(a bucket is sent as soon as all its gradients are ready), so afterwards every rank
holds the same averaged `.grad`: the gradient of the whole batch in one process.
Inside `no_sync()` the gradients stay local and add up; the next synchronised
backward all-reduces the sum. A rank that skips a backward leaves the others waiting
in the all-reduce until the process group's timeout; a parameter that gets no gradient
leaves its bucket unfinished, and the next forward fails on every rank unless DDP was
told to look for such parameters (`find_unused_parameters=True`).

In the debugger ("Scenario: data-parallel, every rank"): a breakpoint on
`loss.backward()` below stops in every rank (each is a process in the Call Stack);
another in torch/nn/parallel/distributed.py `DistributedDataParallel.forward`. While
one rank is paused, the others wait in their next collective: that configuration gives
the process group a long timeout (`--timeout 1800`), so stepping does not end the run.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

import copy
import os
import signal
import sys


from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from scenarios._ranks import recorded_trace_names, interrupt_once, start_torchrun, under_torchrun
from scenarios._runner import ScenarioError, build_parser, run_scenario
from traces import NO_TRACE, Tracer
from traces.__main__ import whole_number

SAMPLES_PER_RANK = 4
SKIP_TIMEOUT = 2  # seconds the other ranks wait for one that skipped its backward
BACKEND = "gloo"  # the CPU backend; nccl would need one GPU per rank
WAIT_ERROR = "Timed out waiting"  # what gloo says when a collective's partner never comes
# scenarios/_record.py records two ranks, each its own trace: traces/recorded/ddp_rank0.json, ...
RECORDED_TRACES = recorded_trace_names("ddp", ranks=2)


@dataclass
class DDPFacts:
    rank: int
    world_size: int
    backend: str
    store_host: str  # MASTER_ADDR, where the process group's store listens: 127.0.0.1
    first_weights_before_ddp: list[float]  # every rank's model.0.weight[0, 0] before DDP(model)
    first_weights_after_ddp: list[float]  # and after: rank 0's everywhere
    buckets: list[list[str]]  # the parameters of each gradient bucket, in the order DDP sends them
    backward_events: list[str]  # gradients becoming ready and buckets all-reduced, in order
    grads_equal_across_ranks: bool  # every .grad bitwise equal on every rank
    max_difference_from_one_process: float  # against one process on the whole batch
    bitwise_equal_to_one_process: bool
    local_grads_differ_in_no_sync: bool  # inside no_sync(), each rank keeps its own gradient
    no_sync_then_sync_equal_across_ranks: bool  # the next backward all-reduces the sum
    max_difference_after_no_sync: float  # against one process on both batches
    skipped_backward_error: str  # what a rank that waited gets when another skipped backward
    unused_parameter_error: str  # the next forward, when a parameter had no gradient in backward
    unused_parameter_grad_with_detection: str | None  # its .grad with find_unused_parameters=True


def make_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def make_batch(step: int, world_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch of a step: the same on every rank (each takes its share)."""
    generator = torch.Generator().manual_seed((seed + step) % 2**64)  # --seed may be up to 2**64 - 1
    inputs = torch.randn(SAMPLES_PER_RANK * world_size, 4, generator=generator)
    targets = torch.randn(SAMPLES_PER_RANK * world_size, 2, generator=generator)
    return inputs, targets


def share(tensor: torch.Tensor, rank: int) -> torch.Tensor:
    return tensor[rank * SAMPLES_PER_RANK : (rank + 1) * SAMPLES_PER_RANK]


def gathered(value: float) -> list[float]:
    """``value`` from every rank, in rank order."""
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def same_on_every_rank(tensors: list[torch.Tensor]) -> bool:
    """True when every rank holds bitwise the same tensors (compared with rank 0's)."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    rank0 = flat.clone()
    dist.broadcast(rank0, src=0)
    return bool(gathered(torch.equal(flat, rank0)) == [True] * dist.get_world_size())


def bucket_caps_one_layer_each(model: nn.Sequential) -> list[float]:
    """Bucket sizes (MiB) that put each Linear layer's weight and bias in a bucket of its own.

    DDP fills buckets with the parameters in the model's order, closing a bucket once it
    holds its cap, then numbers them from the last: the last layer's gradients are ready
    first in backward, so bucket 0 holds them.
    """
    layers = [layer for layer in model if isinstance(layer, nn.Linear)]
    return [sum(p.numel() * p.element_size() for p in layer.parameters()) / 2**20 for layer in layers]


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def data_parallel(device: str = "cpu", tracer: Tracer = NO_TRACE, **launcher_options) -> DDPFacts:
    """One rank's lesson, in a process group already joined (``joined_process_group``).

    ``launcher_options`` (``--ranks``, ``--timeout``) were the launcher's and the process
    group's: inside a rank, the process group says how many ranks there are.
    """
    try:
        return data_parallel_on_this_rank(device, tracer)
    except RuntimeError as error:  # another rank died, or a collective timed out
        raise ScenarioError(f"rank {dist.get_rank()}: {one_line_error(error)}") from None


def data_parallel_on_this_rank(device: str, tracer: Tracer) -> DDPFacts:
    rank, world_size = dist.get_rank(), dist.get_world_size()
    seed = torch.initial_seed()  # --seed, as the runner set it: every rank has the same

    # Each rank starts from weights of its own ...
    torch.manual_seed(seed + rank)
    model = make_model().to(device)
    first_weights_before_ddp = gathered(model[0].weight[0, 0].item())
    # ... and DDP(model) broadcasts rank 0's parameters to every rank.
    ddp_model = DDP(model, bucket_cap_mb_list=bucket_caps_one_layer_each(model))
    first_weights_after_ddp = gathered(model[0].weight[0, 0].item())
    one_process_model = copy.deepcopy(model)  # what a single process would train

    # Watch backward: each parameter's gradient becoming ready, each bucket being sent.
    names = {param: name for name, param in model.named_parameters()}
    events: list[str] = []
    buckets: list[list[str]] = []
    handles = [
        param.register_post_accumulate_grad_hook(lambda p: events.append(f"gradient ready: {names[p]}"))
        for param in model.parameters()
    ]

    def all_reduce_bucket(state, bucket):
        # What DDP does by default: divide by the world size and all-reduce (sum) the bucket.
        if watching:
            bucket_names = [names[p] for p in bucket.parameters()]
            events.append(f"all-reduce bucket {bucket.index()}: {', '.join(bucket_names)}")
            buckets.append(bucket_names)
        tensor = bucket.buffer().div_(world_size)
        return dist.all_reduce(tensor, async_op=True).get_future().then(lambda fut: fut.value()[0])

    ddp_model.register_comm_hook(None, all_reduce_bucket)
    watching = True

    # One synchronised step: each rank on its own share of the batch.
    inputs, targets = make_batch(0, world_size, seed)
    inputs, targets = inputs.to(device), targets.to(device)
    loss = nn.functional.mse_loss(ddp_model(share(inputs, rank)), share(targets, rank))
    with tracer.backward_of({"loss": loss}, names=dict(model.named_parameters())):
        loss.backward()
    watching = False
    for handle in handles:
        handle.remove()
    grads = [p.grad for p in model.parameters()]
    grads_equal_across_ranks = same_on_every_rank(grads)

    # One process on the whole batch computes the same gradient (the mean over all samples).
    nn.functional.mse_loss(one_process_model(inputs), targets).backward()
    one_process_grads = [p.grad for p in one_process_model.parameters()]
    max_difference_from_one_process = max_difference(grads, one_process_grads)
    bitwise_equal_to_one_process = all(torch.equal(a, b) for a, b in zip(grads, one_process_grads))

    # no_sync(): gradients stay on each rank and add up; the next synchronised backward all-reduces.
    ddp_model.zero_grad()
    one_process_model.zero_grad()
    for step in (1, 2):
        inputs, targets = make_batch(step, world_size, seed)
        if step == 1:
            with ddp_model.no_sync():
                nn.functional.mse_loss(ddp_model(share(inputs, rank)), share(targets, rank)).backward()
            local_grads_differ_in_no_sync = not same_on_every_rank([p.grad for p in model.parameters()])
        else:
            nn.functional.mse_loss(ddp_model(share(inputs, rank)), share(targets, rank)).backward()
        nn.functional.mse_loss(one_process_model(inputs), targets).backward()
    grads = [p.grad for p in model.parameters()]
    no_sync_then_sync_equal_across_ranks = same_on_every_rank(grads)
    max_difference_after_no_sync = max_difference(grads, [p.grad for p in one_process_model.parameters()])

    skipped_backward_error = skip_a_backward(seed, SKIP_TIMEOUT)
    unused_parameter_error, unused_parameter_grad_with_detection = leave_a_parameter_unused(seed)

    return DDPFacts(
        rank=rank,
        world_size=world_size,
        backend=dist.get_backend(),
        store_host=os.environ["MASTER_ADDR"],
        first_weights_before_ddp=first_weights_before_ddp,
        first_weights_after_ddp=first_weights_after_ddp,
        buckets=buckets,
        backward_events=events,
        grads_equal_across_ranks=grads_equal_across_ranks,
        max_difference_from_one_process=max_difference_from_one_process,
        bitwise_equal_to_one_process=bitwise_equal_to_one_process,
        local_grads_differ_in_no_sync=local_grads_differ_in_no_sync,
        no_sync_then_sync_equal_across_ranks=no_sync_then_sync_equal_across_ranks,
        max_difference_after_no_sync=max_difference_after_no_sync,
        skipped_backward_error=skipped_backward_error,
        unused_parameter_error=unused_parameter_error,
        unused_parameter_grad_with_detection=unused_parameter_grad_with_detection,
    )


def skip_a_backward(seed: int, timeout: int) -> str:
    """The last rank skips its backward; every other rank waits for it in the all-reduce.

    A process group of its own, with a timeout of ``timeout`` seconds, so that the wait
    ends soon; the rank that skipped learns nothing: it never reached the collective.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    impatient = dist.new_group(backend=BACKEND, timeout=timedelta(seconds=timeout))
    torch.manual_seed(seed)
    ddp_model = DDP(make_model(), process_group=impatient)
    inputs, _ = make_batch(3, world_size, seed)
    loss = ddp_model(share(inputs, rank)).sum()
    error = "none: it skipped backward, so it never reached the all-reduce"
    if rank != world_size - 1:
        try:
            loss.backward()
        except RuntimeError as caught:
            error = one_line_error(caught)
    # The process group's store is the rendezvous that outlives the broken group:
    # the last rank waits there until every other rank has had its error.
    store = dist.distributed_c10d._get_default_store()
    store.add("ranks that waited", 0 if rank == world_size - 1 else 1)
    while int(store.add("ranks that waited", 0)) < world_size - 1:
        store.wait(["ranks that waited"])
    dist.barrier()
    return error


class TwoHeads(nn.Module):
    """A model whose forward uses one of its two layers: the other's parameters get no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 2)
        self.unused = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def leave_a_parameter_unused(seed: int) -> tuple[str, str | None]:
    """DDP waits for every parameter's gradient before it all-reduces its bucket. A parameter
    that backward never reaches leaves its bucket unfinished, and the next forward refuses
    to start, on every rank; ``find_unused_parameters=True`` makes DDP look for them."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    inputs, _ = make_batch(4, world_size, seed)
    torch.manual_seed(seed)
    ddp_model = DDP(TwoHeads())
    ddp_model(share(inputs, rank)).sum().backward()
    try:
        ddp_model(share(inputs, rank))
    except RuntimeError as caught:
        error = one_line_error(caught).split(". ")[0] + "."
    else:
        raise AssertionError("DDP should refuse a forward while a bucket waits for an unused parameter")
    torch.manual_seed(seed)
    detecting = TwoHeads()
    ddp_model = DDP(detecting, find_unused_parameters=True)
    for _ in range(2):
        ddp_model(share(inputs, rank)).sum().backward()
    return error, None if detecting.unused.weight.grad is None else str(detecting.unused.weight.grad)


def one_line_error(error: Exception) -> str:
    """gloo's message without its source path: 'Timed out waiting 2000ms for recv operation to complete'."""
    text = " ".join(str(error).split())
    return text.split("] ", 1)[1] if text.startswith("[") and "] " in text else text


def narrate(facts: DDPFacts) -> Iterator[str]:
    rank = facts.rank
    yield f"[rank {rank}] rank {rank} of world_size {facts.world_size}, backend {facts.backend}, store on {facts.store_host}"
    yield (
        f"[rank {rank}] model.0.weight[0, 0] on every rank before DDP(model): {facts.first_weights_before_ddp}"
        f" -> after: {facts.first_weights_after_ddp} (rank 0's, broadcast)"
    )
    yield f"[rank {rank}] gradient buckets, in the order DDP sends them: {facts.buckets}"
    yield f"[rank {rank}] during loss.backward(), in order:"
    for event in facts.backward_events:
        yield f"[rank {rank}]   {event}"
    yield f"[rank {rank}] every .grad equal on every rank after backward: {facts.grads_equal_across_ranks}"
    exact = "bitwise equal" if facts.bitwise_equal_to_one_process else "not bitwise equal (sums in another order)"
    yield (
        f"[rank {rank}] against one process on the whole batch: largest difference"
        f" {facts.max_difference_from_one_process:.1e}, {exact}"
    )
    yield f"[rank {rank}] inside no_sync(), the ranks' gradients differ: {facts.local_grads_differ_in_no_sync}"
    yield (
        f"[rank {rank}] after the next synchronised backward, equal on every rank:"
        f" {facts.no_sync_then_sync_equal_across_ranks}; against one process on both batches:"
        f" {facts.max_difference_after_no_sync:.1e}"
    )
    yield f"[rank {rank}] when the last rank skips a backward, this rank's error: {facts.skipped_backward_error}"
    yield f"[rank {rank}] when a parameter gets no gradient, the next forward fails: {facts.unused_parameter_error}"
    yield (
        f"[rank {rank}] with find_unused_parameters=True two steps run; the unused weight's .grad:"
        f" {facts.unused_parameter_grad_with_detection}"
    )


def add_options(parser) -> None:
    parser.add_argument(
        "--ranks",
        type=whole_number(1, 64),
        metavar="N",
        help="start torchrun with N processes (default 2); ignored under torchrun, which sets the ranks",
    )
    parser.add_argument(
        "--timeout",
        type=whole_number(1, 24 * 3600),
        default=60,
        metavar="SECONDS",
        help="how long a rank waits in a collective for the others before it gives up (default 60;"
        " the debugger's configuration gives 1800, so that stepping through one rank ends nothing)",
    )


@contextmanager
def joined_process_group(timeout: int) -> Iterator[None]:
    """Join the process group torchrun described in the environment, and leave it at the end.

    Joining also makes every traceback start with "[rank N]: " (torch replaces sys.excepthook);
    leaving puts Python's own back.
    """
    excepthook = sys.excepthook
    dist.init_process_group(BACKEND, timeout=timedelta(seconds=timeout))
    try:
        yield
    finally:
        dist.destroy_process_group()
        sys.excepthook = excepthook


@contextmanager
def rank_by_rank() -> Iterator[None]:
    """Let each rank print in turn, rank 0 first, so that the ranks' lines are not mixed."""
    for _ in range(dist.get_rank()):
        dist.barrier()
    try:
        yield
    finally:
        sys.stdout.flush()
        for _ in range(dist.get_world_size() - dist.get_rank()):
            dist.barrier()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not under_torchrun():
        return start_torchrun("ddp", __file__, argv, build_parser("ddp", __doc__, add_options), default_ranks=2)
    try:
        if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, scenarios._ctrl_c.exit_at_once):
            signal.signal(signal.SIGINT, interrupt_once)
        timeout = build_parser("ddp", __doc__, add_options).parse_args(argv).timeout
        with joined_process_group(timeout):
            return run_scenario(
                "ddp",
                data_parallel,
                narrate,
                doc=__doc__,
                add_options=add_options,
                argv=argv,
                trace_name=f"ddp_rank{dist.get_rank()}",
                in_turn=rank_by_rank,
            )
    except KeyboardInterrupt:  # while joining or leaving the process group
        scenarios._ctrl_c.say("scenarios/ddp.py: interrupted (Ctrl-C); nothing was left half-written")
        return scenarios._ctrl_c.INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
