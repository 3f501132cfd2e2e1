"""PyTorch's quickstart, whole: data, model, train and test loops, save, reload, predict.

This is the tutorial's code (FashionMNIST through torchvision with ToTensor,
DataLoader(batch_size=64), a three-layer MLP, CrossEntropyLoss, SGD(lr=1e-3), five
epochs), made to run offline: without the real data it trains on a stand-in in
the same format (see scenarios/_fashion.py; --download fetches the real one).
The model is saved atomically and reloaded with a plain torch.load(path): since
torch 2.6 its weights_only defaults to True, so it refuses a checkpoint whose
pickle would run code (tests/test_quickstart.py shows one refused). The test loop runs under
torch.no_grad(), so it builds no graph (its predictions have no grad_fn);
model.eval() alone would not stop autograd from recording (see training_step.py).
Torch computes with one thread per idle core (threads on busy cores slow it down
many times); the second line printed says how many.

In the debugger: put a breakpoint on `optimizer.step()` in `train` and step in
(F11): you land in torch/optim/optimizer.py `wrapper`, which every optimizer's
step passes (hooks, profiling) before torch/optim/sgd.py `SGD.step`; a function
breakpoint named `step` stops in `SGD.step` itself (see docs/debugger.md). Or put one
on `torch.load` in `load_model` to see torch/serialization.py choose the
weights-only unpickler although the call does not ask for it.
"""

from __future__ import annotations

import scenarios._ctrl_c  # noqa: F401  isort: skip (first, so that Ctrl-C while torch loads is one line too)

import argparse
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

# Imported before the lesson runs, so that torchvision's own import (which loads
# much of torch) stays out of --trace's ops and source views.
import torchvision  # noqa: F401
from torch import nn
from torch.utils.data import DataLoader, Subset

from scenarios._fashion import (
    CLASSES,
    NeuralNetwork,
    data_folder,
    load_fashion_mnist,
)
from scenarios._runner import output_file, positive_number, run_scenario, whole_number
from traces import NO_TRACE, Tracer
from traces.basics.saving import replacing, write_failure

classes = CLASSES  # the tutorial's name for the class names
MAX_THREADS = 1024


@dataclass
class QuickstartFacts:
    data: str  # which data was used, and how to get the real data
    threads: str  # how many threads torch computed with, and why
    is_standin: bool
    train_size: int
    test_size: int
    first_batch: dict[str, str]  # shape and dtype of X and y in the first batch
    accuracy: list[float]  # test accuracy after each epoch, in percent
    avg_loss: list[float]  # average test loss after each epoch
    test_grad_fns: list[str | None]  # the test loop's last pred.grad_fn, each epoch: None under no_grad
    train_seconds: float  # time spent in train(), all epochs
    samples_per_second: float  # training samples through train() per second
    model_path: str
    reloaded_parameters_identical: bool  # every tensor of the reloaded model equals the trained one
    predicted_before_saving: str  # what the trained model said about test_data[0]
    predicted: str  # what the reloaded model says about it
    actual: str


def train(dataloader, model, loss_fn, optimizer, device, tracer: Tracer = NO_TRACE):
    size = len(dataloader.dataset)
    model.train()
    with progress_bar() as progress:
        for batch, (X, y) in enumerate(progress.track(dataloader, description="training")):
            X, y = X.to(device), y.to(device)

            # Compute prediction error
            pred = model(X)
            loss = loss_fn(pred, y)

            # Backpropagation (with --trace, the first batch's backward pass is recorded)
            recorder = tracer if batch == 0 else NO_TRACE
            with recorder.backward_of({"loss": loss}, names=dict(model.named_parameters())):
                loss.backward()
            optimizer.step()
            optimizer.zero_grad()

            if batch % 100 == 0:
                loss, current = loss.item(), (batch + 1) * len(X)
                print(f"loss: {loss:>7f}  [{current:>5d}/{size:>5d}]")


def test(dataloader, model, loss_fn, device):
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            X, y = X.to(device), y.to(device)
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    test_loss /= num_batches
    correct /= size
    print(f"Test Error: \n Accuracy: {(100*correct):>0.1f}%, Avg loss: {test_loss:>8f} \n")
    graph = None if pred.grad_fn is None else type(pred.grad_fn).__name__  # None: no_grad recorded nothing
    return 100 * correct, test_loss, graph


def progress_bar():
    """A rich progress bar that disappears when done; print() shows above it meanwhile.

    Only on a terminal: output to a file or a pipe stays exactly the tutorial's lines.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


def save_model(model: nn.Module, path: Path) -> BinaryIO:
    """torch.save the model's state_dict to ``path`` atomically; returns the saved file, open.

    It goes to a temporary file in the same folder, then os.replace puts it in
    place in one step: a save that fails or is interrupted leaves an earlier file
    intact, and no temporary file (traces/basics/saving.py). Reading the returned file
    gives exactly what was saved, even if another run replaces ``path`` meanwhile.
    """
    try:
        with replacing(path, keep_open=True) as file:
            torch.save(model.state_dict(), file)
    except RuntimeError as error:
        # When a write fails (a full disk) or Ctrl-C stops it, torch's writer fails again
        # closing the file and raises that ("unexpected pos ..."): pass on the real cause.
        cause = error.__context__
        if isinstance(cause, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        if isinstance(cause, OSError):
            raise write_failure(path, cause) from error
        raise
    file.seek(0)
    return file


def load_model(checkpoint: Path | BinaryIO, device: str = "cpu") -> NeuralNetwork:
    """A new model with the weights saved in ``checkpoint`` (a path or an open file).

    torch.load's weights_only is True by default (since torch 2.6): the unpickler
    builds only tensors and plain containers, and a checkpoint whose pickle would
    call anything else is refused, not run. Passing weights_only=False would run it.
    """
    model = NeuralNetwork().to(device)
    model.load_state_dict(torch.load(checkpoint))
    return model


def predict(model: nn.Module, x: torch.Tensor, device: str) -> str:
    model.eval()
    with torch.no_grad():
        pred = model(x.to(device))
    return classes[pred[0].argmax(0)]


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """How many threads torch should compute with, and a line that says so and why.

    Torch starts one thread per core. On a machine whose cores are busy with other
    work, those threads wait for each other at every operator and the training
    loop runs many times slower (6 to 12 times on two busy cores); so one thread per idle
    core, judged by the load average of the last minute, and at least one.
    """
    if requested is not None:
        return requested, f"Threads: {requested} (--threads {requested})"
    most = torch.get_num_threads()  # torch's own choice: one per core, or OMP_NUM_THREADS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): keep torch's choice
        return most, f"Threads: {most}, torch's default (--threads N to choose)"
    count = max(1, min(most, math.floor(cores - load + 0.5)))
    return count, (
        f"Threads: {count} of {cores} cores (load average {load:.1f}; one per idle core, as threads "
        "on busy cores slow torch down many times; --threads N to choose)"
    )


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch.set_num_threads(count) for the block, then back to what it was."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def quickstart(
    device: str = "cpu",
    tracer: Tracer = NO_TRACE,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    data: Path = Path("data"),
    download: bool = False,
    limit: int | None = None,
    model_path: Path = Path("model.pth"),
    threads: int | None = None,
) -> QuickstartFacts:
    count, threads_line = choose_threads(threads)
    with torch_threads(count):
        return run_tutorial(
            device, tracer, epochs, batch_size, lr, data, download, limit, model_path, threads_line=threads_line
        )


def run_tutorial(
    device: str,
    tracer: Tracer,
    epochs: int,
    batch_size: int,
    lr: float,
    data: Path,
    download: bool,
    limit: int | None,
    model_path: Path,
    threads_line: str,
) -> QuickstartFacts:
    """The tutorial's code, once ``quickstart`` has chosen torch's thread count."""
    fashion = load_fashion_mnist(data, download)
    print(fashion.describe())
    print(threads_line)
    training_data, test_data = fashion.training_data, fashion.test_data
    if limit is not None:  # the first `limit` samples of each, for a quick run
        training_data = Subset(training_data, range(min(limit, len(training_data))))
        test_data = Subset(test_data, range(min(limit, len(test_data))))

    # Create data loaders.
    train_dataloader = DataLoader(training_data, batch_size=batch_size)
    test_dataloader = DataLoader(test_data, batch_size=batch_size)

    for X, y in test_dataloader:
        print(f"Shape of X [N, C, H, W]: {X.shape}")
        print(f"Shape of y: {y.shape} {y.dtype}")
        break
    first_batch = {"X": f"{list(X.shape)} {X.dtype}", "y": f"{list(y.shape)} {y.dtype}"}

    print(f"Using {device} device")
    model = NeuralNetwork().to(device)
    print(model)

    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    accuracy, avg_loss, test_grad_fns, train_seconds = [], [], [], 0.0
    for t in range(epochs):
        print(f"Epoch {t+1}\n-------------------------------")
        start = time.perf_counter()
        train(train_dataloader, model, loss_fn, optimizer, device, tracer if t == 0 else NO_TRACE)
        train_seconds += time.perf_counter() - start
        epoch_accuracy, epoch_loss, test_grad_fn = test(test_dataloader, model, loss_fn, device)
        accuracy.append(epoch_accuracy)
        avg_loss.append(epoch_loss)
        test_grad_fns.append(test_grad_fn)
    print("Done!")

    x, y = test_data[0][0], test_data[0][1]
    predicted_before_saving = predict(model, x, device)

    # The file just saved stays open: reloading through it reads exactly what this run
    # saved, even if another run saves to the same path at the same time.
    with save_model(model, model_path) as checkpoint:
        print(f"Saved PyTorch Model State to {model_path}")
        reloaded = load_model(checkpoint, device)
    trained_state, reloaded_state = model.state_dict(), reloaded.state_dict()
    identical = trained_state.keys() == reloaded_state.keys() and all(
        torch.equal(trained_state[key], reloaded_state[key]) for key in trained_state
    )

    predicted, actual = predict(reloaded, x, device), classes[y]
    print(f'Predicted: "{predicted}", Actual: "{actual}"')

    samples = epochs * len(training_data)
    return QuickstartFacts(
        data=fashion.describe(),
        threads=threads_line,
        is_standin=fashion.is_standin,
        train_size=len(training_data),
        test_size=len(test_data),
        first_batch=first_batch,
        accuracy=accuracy,
        avg_loss=avg_loss,
        test_grad_fns=test_grad_fns,
        train_seconds=round(train_seconds, 3),
        samples_per_second=round(samples / train_seconds, 1),
        model_path=str(model_path),
        reloaded_parameters_identical=identical,
        predicted_before_saving=predicted_before_saving,
        predicted=predicted,
        actual=actual,
    )


def narrate(facts: QuickstartFacts) -> Iterator[str]:
    yield ""
    yield "What this run showed:"
    yield f"The first batch: X {facts.first_batch['X']} (ToTensor scaled pixels to [0, 1]), y {facts.first_batch['y']}"
    data = "the stand-in" if facts.is_standin else "FashionMNIST"
    yield f"Trained on {facts.train_size} and tested on {facts.test_size} images of {data}"
    accuracies = ", ".join(f"{value:.1f}%" for value in facts.accuracy)
    yield f"Test accuracy after each epoch: {accuracies} (chance is 10%)"
    yield (
        f"The test loop ran under torch.no_grad(): its predictions' grad_fn, each epoch: {facts.test_grad_fns}"
        " (no graph built; model.eval() alone would not do that)"
    )
    yield f"The training loop ran {facts.samples_per_second:.0f} samples/s ({facts.train_seconds:.1f} s in train())"
    yield (
        f"Saved atomically to {facts.model_path} (a temporary file in the same folder, then os.replace),"
        " and reloaded from that very file"
    )
    yield (
        "Reloaded with torch.load(path), weights_only True by default since torch 2.6: parameters identical ="
        f" {facts.reloaded_parameters_identical}; the trained model predicted \"{facts.predicted_before_saving}\","
        f" the reloaded one \"{facts.predicted}\""
    )


# --- Command-line options ----------------------------------------------------------


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=whole_number(1), default=5, metavar="N", help="epochs to train (default: 5)")
    parser.add_argument("--batch-size", type=whole_number(1), default=64, metavar="N", help="batch size (default: 64)")
    parser.add_argument(
        "--lr", type=positive_number, default=1e-3, metavar="RATE", help="SGD learning rate (default: 1e-3)"
    )
    parser.add_argument(
        "--data", type=data_folder, default=Path("data"), metavar="DIR", help="the data folder (default: data)"
    )
    parser.add_argument("--download", action="store_true", help="download the real FashionMNIST into the data folder")
    parser.add_argument(
        "--limit", type=whole_number(1), metavar="N", help="use only the first N training and test samples, for quick runs"
    )
    parser.add_argument(
        "--model",
        dest="model_path",
        type=output_file,
        default=Path("model.pth"),
        metavar="PATH",
        help="where to save the model (default: model.pth)",
    )
    parser.add_argument(
        "--threads",
        type=whole_number(1, MAX_THREADS),
        metavar="N",
        help="threads torch computes with (default: one per idle core, judged by the load average)",
    )


def main(argv: list[str] | None = None) -> int:
    return run_scenario("quickstart", quickstart, narrate, doc=__doc__, add_options=add_options, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
