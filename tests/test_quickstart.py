"""The quickstart's whole flow, on a few samples of the stand-in; saving and reloading safely."""

import io
import pickle
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
from torchvision import datasets
from torchvision.transforms import ToTensor

from conftest import ROOT, run_main, run_script
from doc_pages import page
from faults import DISK_FULL, fail_mid_file, files_in
from scenarios._fashion import CLASSES, STANDIN_FOLDER, NeuralNetwork
from scenarios.quickstart import choose_threads, load_model, main, quickstart, save_model

LIMIT = 256  # samples, for a run of a second or two


@pytest.fixture(scope="module")
def run(fashion_data, tmp_path_factory):
    """The quickstart for one epoch on the first LIMIT samples: its facts, what it printed, its model file."""
    model_path = tmp_path_factory.mktemp("model") / "model.pth"
    printed = io.StringIO()
    torch.manual_seed(0)
    with redirect_stdout(printed):
        facts = quickstart(epochs=1, limit=LIMIT, data=fashion_data, model_path=model_path)
    return facts, printed.getvalue(), model_path


def test_the_first_batch_has_the_tutorials_shapes(run):
    facts, printed, _ = run
    assert facts.first_batch == {"X": "[64, 1, 28, 28] torch.float32", "y": "[64] torch.int64"}
    assert "Shape of X [N, C, H, W]: torch.Size([64, 1, 28, 28])\n" in printed
    assert "Shape of y: torch.Size([64]) torch.int64\n" in printed


def test_it_says_once_which_data_it_uses(run, fashion_data):
    facts, printed, _ = run
    assert facts.is_standin and (facts.train_size, facts.test_size) == (LIMIT, LIMIT)
    assert printed.count("Data: ") == 1
    assert f"Data: the offline stand-in for FashionMNIST in {fashion_data / STANDIN_FOLDER}" in printed
    assert "run once with --download" in printed


def test_it_prints_the_tutorials_lines(run):
    facts, printed, _ = run
    assert re.search(r"^loss: \d\.\d{6}  \[   64/  256\]$", printed, re.MULTILINE)
    assert "NeuralNetwork(\n  (flatten): Flatten(start_dim=1, end_dim=-1)" in printed
    accuracy = re.findall(r"^ Accuracy: (\d+\.\d)%, Avg loss: (\d\.\d{6}) $", printed, re.MULTILINE)
    assert accuracy == [(f"{facts.accuracy[0]:.1f}", f"{facts.avg_loss[0]:.6f}")]
    assert "Done!\n" in printed


def test_the_test_loop_builds_no_graph(run):
    facts, _, _ = run
    assert facts.test_grad_fns == [None]  # without torch.no_grad(): ["AddmmBackward0"]


def test_the_model_is_saved_and_reloads_with_identical_parameters(run):
    facts, printed, model_path = run
    assert f"Saved PyTorch Model State to {model_path}\n" in printed
    assert list(model_path.parent.iterdir()) == [model_path]  # no temporary file left
    state = torch.load(model_path)  # weights_only=True is the default
    assert list(state) == [name for name, _ in NeuralNetwork().named_parameters()]
    assert facts.reloaded_parameters_identical is True


def test_the_reloaded_model_predicts_what_the_trained_one_did(run, fashion_data):
    facts, printed, model_path = run
    assert facts.predicted == facts.predicted_before_saving
    test_data = datasets.FashionMNIST(root=fashion_data / STANDIN_FOLDER, train=False, transform=ToTensor())
    x, y = test_data[0]
    with torch.no_grad():
        again = CLASSES[load_model(model_path)(x)[0].argmax(0)]
    assert (again, CLASSES[y]) == (facts.predicted, facts.actual)
    assert f'Predicted: "{facts.predicted}", Actual: "{facts.actual}"\n' in printed


def test_the_training_loop_is_timed(run):
    facts, _, _ = run
    assert facts.train_seconds > 0
    # train_seconds is rounded to the millisecond and samples_per_second to a tenth: allow for both.
    fastest, slowest = facts.train_seconds - 0.0005, facts.train_seconds + 0.0005
    assert LIMIT / slowest - 0.05 <= facts.samples_per_second <= LIMIT / fastest + 0.05


# The quick run of docs/scenarios.md: one epoch of 10000 images at a larger learning rate.
QUICK_RUN = "--epochs 1 --limit 10000 --lr 0.05"


def test_the_readmes_quick_run_is_clearly_above_chance(fashion_data, tmp_path):
    assert f"scenarios/quickstart.py {QUICK_RUN}" in page("scenarios.md")
    torch.manual_seed(0)  # 74% on the stand-in; seeds 0 to 2 give 73.6% to 74.2%
    with redirect_stdout(io.StringIO()):
        facts = quickstart(epochs=1, limit=10000, lr=0.05, data=fashion_data, model_path=tmp_path / "model.pth")
    assert facts.accuracy[0] > 60  # chance is 10%


def test_the_script_end_to_end(fashion_data, tmp_path):
    model_path = tmp_path / "model.pth"
    result = run_script(
        "scenarios/quickstart.py", "--epochs", "1", "--limit", "128", "--data", str(fashion_data),
        "--model", str(model_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"^ Accuracy: \d+\.\d%, Avg loss: \d\.\d{6} $", result.stdout, re.MULTILINE)
    assert re.search(r'^Predicted: "[^"]+", Actual: "[^"]+"$', result.stdout, re.MULTILINE)
    assert "Reloaded with torch.load(path), weights_only True by default since torch 2.6: parameters identical = True" in result.stdout
    assert model_path.is_file()


def test_the_narrative_states_each_fact_with_its_value(fashion_data, tmp_path, monkeypatch, capsys):
    model_path = tmp_path / "model.pth"
    argv = ["--epochs", "1", "--limit", "128", "--data", str(fashion_data), "--model", str(model_path)]
    facts, lines = run_main("quickstart", argv, monkeypatch, capsys)
    start = lines.index("What this run showed:") - 1
    assert lines[:2] == [facts.data, facts.threads]  # which data, and how many threads torch used
    assert re.fullmatch(r"Threads: \d+ of \d+ cores \(load average \d+\.\d; one per idle core, .*\)", facts.threads)
    assert lines[start - 1] == f'Predicted: "{facts.predicted}", Actual: "{facts.actual}"'  # the tutorial's last line
    assert lines[start:] == [
        "",
        "What this run showed:",
        "The first batch: X [64, 1, 28, 28] torch.float32 (ToTensor scaled pixels to [0, 1]), y [64] torch.int64",
        "Trained on 128 and tested on 128 images of the stand-in",
        f"Test accuracy after each epoch: {facts.accuracy[0]:.1f}% (chance is 10%)",
        "The test loop ran under torch.no_grad(): its predictions' grad_fn, each epoch: [None]"
        " (no graph built; model.eval() alone would not do that)",
        f"The training loop ran {facts.samples_per_second:.0f} samples/s ({facts.train_seconds:.1f} s in train())",
        f"Saved atomically to {model_path} (a temporary file in the same folder, then os.replace),"
        " and reloaded from that very file",
        "Reloaded with torch.load(path), weights_only True by default since torch 2.6: parameters identical = True; the trained model"
        f' predicted "{facts.predicted_before_saving}", the reloaded one "{facts.predicted}"',
    ]
    assert f" Accuracy: {facts.accuracy[0]:.1f}%, Avg loss: {facts.avg_loss[0]:.6f} " in lines
    assert facts.predicted == facts.predicted_before_saving


class CreatesAFile:
    """Pickles as a call to open(path, "w"): loading it creates the file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    created = tmp_path / "created-by-the-checkpoint"
    checkpoint = tmp_path / "model.pth"
    torch.save({"linear_relu_stack.0.weight": CreatesAFile(created)}, checkpoint)

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_model(checkpoint)
    assert not created.exists()

    # torch.load itself, with weights_only left out: refused by default, with torch's message.
    with pytest.raises(pickle.UnpicklingError) as refused:
        torch.load(checkpoint)
    message = str(refused.value)
    assert message.startswith("Weights only load failed.")
    assert "we changed the default value of the `weights_only` argument in `torch.load` from `False` to `True`" in message
    assert "Unsupported global: GLOBAL io.open was not an allowed global by default" in message
    assert not created.exists()

    # What weights_only=True prevented: a plain unpickler runs the call.
    loaded = torch.load(checkpoint, weights_only=False)
    loaded["linear_relu_stack.0.weight"].close()
    assert created.exists()


def test_load_model_leaves_weights_only_to_torchs_default(tmp_path, monkeypatch):
    # The lesson is that the default protects: load_model must not pass weights_only at all.
    checkpoint = tmp_path / "model.pth"
    torch.save(NeuralNetwork().state_dict(), checkpoint)
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: calls.append(kwargs) or real_load(*args, **kwargs))
    load_model(checkpoint)
    assert calls == [{}]


@pytest.mark.parametrize(
    "failure, message",
    [
        (DISK_FULL, "could not write {path}: No space left on device (the earlier file is unchanged); free some space"),
        (KeyboardInterrupt(), None),
    ],
    ids=["disk full", "Ctrl-C"],
)
def test_a_save_that_fails_halfway_leaves_the_earlier_model_intact(tmp_path, monkeypatch, failure, message):
    model_path = tmp_path / "model.pth"
    model_path.write_bytes(b"the earlier model")
    fail_mid_file(monkeypatch, room=100_000, error=failure)  # of 2.6 MB
    expected = re.escape(message.format(path=model_path)) if message else None
    with pytest.raises(type(failure), match=expected):
        save_model(NeuralNetwork(), model_path)
    assert model_path.read_bytes() == b"the earlier model"
    assert files_in(tmp_path) == ["model.pth"]  # the temporary file is gone


def test_save_replaces_an_earlier_model_and_returns_the_saved_file(tmp_path):
    model_path = tmp_path / "model.pth"
    model_path.write_bytes(b"the earlier model")
    model = NeuralNetwork()
    with save_model(model, model_path) as saved:
        from_the_file = load_model(saved)
    from_the_path = load_model(model_path)
    for reloaded in (from_the_file, from_the_path):
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
    assert list(tmp_path.iterdir()) == [model_path]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "argument --epochs: 0 is too small; it must be 1 or more"),
        (["--epochs", "two"], "argument --epochs: 'two' is not a whole number"),
        (["--batch-size", "-64"], "argument --batch-size: -64 is too small; it must be 1 or more"),
        (["--limit", "-1"], "argument --limit: -1 is too small; it must be 1 or more"),
        (["--lr", "0"], "argument --lr: 0 is not a positive number"),
        (["--lr", "nan"], "argument --lr: nan is not a positive number"),
        (["--model", "no/such/folder/model.pth"], "argument --model: the folder 'no/such/folder' does not exist"),
        (["--batch-size", str(2**63)], f"argument --batch-size: {2**63} is too large; it must be at most {2**63 - 1}"),
        (["--lr", "-inf"], "argument --lr: -inf is not a positive number"),
        (["--lr", "-1e-3"], "argument --lr: -1e-3 is not a positive number"),
        (["--threads", "0"], "argument --threads: 0 is too small; it must be 1 or more"),
        (["--threads", "1025"], "argument --threads: 1025 is too large; it must be at most 1024"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_a_file_as_the_data_folder_or_a_folder_as_the_model_is_refused(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    for argv, message in [
        (["--data", str(a_file)], f"argument --data: '{a_file}' is a file, not a folder"),
        (["--model", str(tmp_path)], f"argument --model: '{tmp_path}' is a folder, not a file"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
    assert sorted(tmp_path.iterdir()) == [a_file]


@pytest.mark.parametrize("on_a_terminal", [True, False])
def test_a_progress_bar_shows_on_a_terminal_only(fashion_data, tmp_path, monkeypatch, on_a_terminal):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "1" if on_a_terminal else "0")  # what rich asks to decide
    printed = io.StringIO()
    with redirect_stdout(printed):
        quickstart(epochs=1, limit=128, data=fashion_data, model_path=tmp_path / "model.pth")
    assert ("training" in printed.getvalue()) is on_a_terminal
    assert ("2/2" in printed.getvalue()) is on_a_terminal  # 128 samples are 2 batches of 64
    assert "loss: " in printed.getvalue()


@pytest.mark.parametrize(
    "load, threads",
    [(0.1, 2), (0.9, 1), (1.2, 1), (5.3, 1)],
)
def test_torch_gets_one_thread_per_idle_core(monkeypatch, load, threads):
    monkeypatch.setattr("os.getloadavg", lambda: (load, load, load))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # torch's own choice on 2 cores
    count, line = choose_threads()
    assert count == threads
    assert line == (
        f"Threads: {threads} of 2 cores (load average {load:.1f}; one per idle core, as threads on busy cores "
        "slow torch down many times; --threads N to choose)"
    )


def test_threads_asked_for_are_used_and_torchs_setting_comes_back(fashion_data, tmp_path):
    assert choose_threads(3) == (3, "Threads: 3 (--threads 3)")
    before = torch.get_num_threads()
    printed = io.StringIO()
    with redirect_stdout(printed):
        facts = quickstart(epochs=1, limit=64, data=fashion_data, model_path=tmp_path / "model.pth", threads=3)
    assert printed.getvalue().splitlines()[1] == "Threads: 3 (--threads 3)" == facts.threads  # the second line
    assert torch.get_num_threads() == before


def test_without_a_load_average_torchs_choice_stays(monkeypatch):
    def no_load_average():
        raise OSError("no load average here")

    monkeypatch.setattr("os.getloadavg", no_load_average)
    most = torch.get_num_threads()
    assert choose_threads() == (most, f"Threads: {most}, torch's default (--threads N to choose)")
