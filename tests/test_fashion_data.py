"""The quickstart's data: the stand-in in FashionMNIST's own format, read by torchvision."""

import gzip
import shutil
import socket
from urllib.error import URLError

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor

from scenarios._fashion import (
    CLASSES,
    FILES,
    STANDIN_FOLDER,
    DataError,
    ensure_standin,
    idx_header,
    load_fashion_mnist,
    standin_problem,
    write_standin,
)
from scenarios.quickstart import main as quickstart_main
from conftest import run_script


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def standin(fashion_data):
    return fashion_data / STANDIN_FOLDER


def raw_files_in(tmp_path, standin):
    """A data folder that looks like a real FashionMNIST download (the stand-in's files)."""
    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(standin / "FashionMNIST" / "raw", raw)
    return raw


def test_the_standin_has_fashion_mnists_files(standin):
    raw = standin / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(FILES)
    assert (raw / "train-images-idx3-ubyte").stat().st_size == 16 + 60000 * 28 * 28
    assert (raw / "t10k-labels-idx1-ubyte").stat().st_size == 8 + 10000


def test_torchvisions_fashion_mnist_reads_the_standin(standin):
    training_data = datasets.FashionMNIST(root=standin, train=True, download=False, transform=ToTensor())
    test_data = datasets.FashionMNIST(root=standin, train=False, download=False, transform=ToTensor())
    assert (len(training_data), len(test_data)) == (60000, 10000)
    assert training_data.data.shape == (60000, 28, 28) and training_data.data.dtype == torch.uint8
    assert training_data.targets.dtype == torch.int64
    assert sorted(training_data.targets.unique().tolist()) == list(range(10))
    assert tuple(training_data.classes) == CLASSES
    image, label = test_data[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0  # ToTensor scales 0..255 to 0..1
    assert isinstance(label, int) and 0 <= label <= 9


def test_the_first_batch_has_the_tutorials_shapes(standin):
    test_data = datasets.FashionMNIST(root=standin, train=False, download=False, transform=ToTensor())
    X, y = next(iter(DataLoader(test_data, batch_size=64)))
    assert (X.shape, X.dtype) == (torch.Size([64, 1, 28, 28]), torch.float32)
    assert (y.shape, y.dtype) == (torch.Size([64]), torch.int64)


def test_the_standin_is_the_same_for_the_same_seed(standin, tmp_path):
    again = write_standin(tmp_path / "again", seed=0)
    other = write_standin(tmp_path / "other", seed=1)
    for name in FILES:
        original = (standin / "FashionMNIST" / "raw" / name).read_bytes()
        assert (again / name).read_bytes() == original, name
        assert (other / name).read_bytes() != original, name


def test_each_class_has_its_own_shape(standin):
    """Learnable: even the nearest class average classifies most test images right."""
    training_data = datasets.FashionMNIST(root=standin, train=True)
    test_data = datasets.FashionMNIST(root=standin, train=False)
    images = training_data.data.flatten(1).float()
    averages = torch.stack([images[training_data.targets == c].mean(0) for c in range(10)])
    nearest = torch.cdist(test_data.data.flatten(1).float(), averages).argmin(1)
    accuracy = (nearest == test_data.targets).float().mean().item()
    assert accuracy > 0.6


def test_without_real_files_the_standin_is_used_and_kept(fashion_data):
    fashion = load_fashion_mnist(fashion_data)
    assert fashion.is_standin
    assert fashion.raw_folder == fashion_data / STANDIN_FOLDER / "FashionMNIST" / "raw"
    assert fashion.generated_seconds is None  # already there: not written again
    assert "stand-in" in fashion.describe() and "--download" in fashion.describe()
    assert len(fashion.training_data) == 60000


def test_a_damaged_standin_is_written_again_and_the_first_line_says_why(standin, tmp_path):
    root = tmp_path / STANDIN_FOLDER
    raw = raw_files_in(root, standin)
    whole = (raw / "t10k-images-idx3-ubyte").read_bytes()
    (raw / "t10k-images-idx3-ubyte").write_bytes(whole[:1000])
    (raw / "train-labels-idx1-ubyte").unlink()
    fashion = load_fashion_mnist(tmp_path)
    assert fashion.is_standin and fashion.generated_seconds is not None
    assert fashion.rebuilt_because == "train-labels-idx1-ubyte was missing"
    rebuilt = f"(one simple shape per class, rebuilt now in {fashion.generated_seconds:.1f} s because "
    assert rebuilt + "train-labels-idx1-ubyte was missing); " in fashion.describe()
    assert (raw / "t10k-images-idx3-ubyte").read_bytes() == whole
    assert sorted(p.name for p in raw.iterdir()) == sorted(FILES)  # no temporary files left
    assert ensure_standin(root) is None
    (raw / "t10k-images-idx3-ubyte").write_bytes(whole[:1000])
    assert standin_problem(root) == "t10k-images-idx3-ubyte was truncated: 1000 bytes instead of 7840016"


def test_real_files_are_used_when_present(standin, tmp_path):
    raw = raw_files_in(tmp_path, standin)
    fashion = load_fashion_mnist(tmp_path)
    assert not fashion.is_standin
    assert fashion.raw_folder == raw
    assert fashion.describe() == f"Data: FashionMNIST from {raw}"
    assert not (tmp_path / STANDIN_FOLDER).exists()


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda data: data[: len(data) // 2], "is truncated: 23520008 bytes instead of 47040016"),
        (lambda data: data + b"\0", "is too long: 47040017 bytes instead of 47040016"),
        (lambda data: b"<html>" + data[6:], "is not an IDX file of unsigned bytes"),
        (lambda data: b"", "is not an IDX file of unsigned bytes"),
        (lambda data: idx_header((10, 32, 32)) + bytes(10 * 32 * 32), "holds shape [10, 32, 32], not [N, 28, 28]"),
    ],
)
def test_a_damaged_data_file_is_named_with_what_to_do(standin, tmp_path, damage, problem):
    raw = raw_files_in(tmp_path, standin)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError) as error:
        load_fashion_mnist(tmp_path)
    assert str(error.value) == f"data file {path} {problem}: delete it and run with --download to fetch it again"


def test_labels_out_of_range_are_refused(standin, tmp_path):
    raw = raw_files_in(tmp_path, standin)
    path = raw / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1] + bytes([12]))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte has label 12; labels are 0 to 9"):
        load_fashion_mnist(tmp_path)


def test_fewer_labels_than_images_is_refused(standin, tmp_path):
    raw = raw_files_in(tmp_path, standin)
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(idx_header((100,)) + bytes(100))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte has 100 labels for 60000 images"):
        load_fashion_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_header((10000, 1)) + bytes(10000))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte holds shape \[10000, 1\], not \[N\]"):
        load_fashion_mnist(tmp_path)


def test_some_real_files_missing_is_named(standin, tmp_path):
    raw = raw_files_in(tmp_path, standin)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte: run with --download to fetch it"):
        load_fashion_mnist(tmp_path)


def test_a_corrupt_data_file_is_one_line_from_the_shell(standin, tmp_path):
    raw = raw_files_in(tmp_path, standin)
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    result = run_script("scenarios/quickstart.py", "--data", str(tmp_path), "--model", str(tmp_path / "model.pth"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"scenarios/quickstart.py: error: data file {path} is truncated: 5000 bytes instead of 7840016: "
        "delete it and run with --download to fetch it again"
    ]
    assert not (tmp_path / "model.pth").exists()


def test_a_failed_download_is_one_line(tmp_path, monkeypatch, capsys):
    def no_network(url, download_root, filename=None, md5=None):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets.mnist, "download_and_extract_archive", no_network)
    status = quickstart_main(["--download", "--data", str(tmp_path), "--model", str(tmp_path / "model.pth")])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"scenarios/quickstart.py: error: could not download FashionMNIST into {tmp_path}: ")
    assert "Temporary failure in name resolution" in err
    assert err.endswith("(check the network, or run without --download to use the offline stand-in)\n")


def small_real_data(raw, count: int = 100) -> dict[str, bytes]:
    """A small FashionMNIST-like set, as the files would be after unpacking: name -> contents."""
    generator = torch.Generator().manual_seed(0)
    contents = {}
    for split in ("train", "t10k"):
        labels = torch.randint(10, (count,), generator=generator, dtype=torch.uint8)
        images = torch.randint(256, (count, 28, 28), generator=generator, dtype=torch.uint8)
        contents[f"{split}-images-idx3-ubyte"] = idx_header((count, 28, 28)) + images.numpy().tobytes()
        contents[f"{split}-labels-idx1-ubyte"] = idx_header((count,)) + labels.numpy().tobytes()
    return contents


def test_real_data_as_downloaded_gz_files_is_unpacked_and_used(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    contents = small_real_data(raw)
    for name, content in contents.items():
        (raw / f"{name}.gz").write_bytes(gzip.compress(content, compresslevel=1))
    fashion = load_fashion_mnist(tmp_path)
    assert not fashion.is_standin and len(fashion.training_data) == 100
    assert fashion.describe() == (
        f"Data: FashionMNIST from {raw} (unpacked now from "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
    )
    assert all((raw / name).read_bytes() == content for name, content in contents.items())
    assert not (tmp_path / STANDIN_FOLDER).exists()
    assert load_fashion_mnist(tmp_path).describe() == f"Data: FashionMNIST from {raw}"  # unpacked once


def test_a_damaged_gz_file_is_named_with_what_to_do(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, content in small_real_data(raw).items():
        (raw / f"{name}.gz").write_bytes(gzip.compress(content, compresslevel=1)[:-20])  # cut short
    with pytest.raises(DataError) as error:
        load_fashion_mnist(tmp_path)
    assert str(error.value).startswith(f"data file {raw / 'train-images-idx3-ubyte.gz'} is damaged (")
    assert str(error.value).endswith("): delete it and run with --download to fetch it again")
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{name}.gz" for name in FILES)  # nothing half-unpacked
