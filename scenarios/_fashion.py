"""The quickstart's model and data: FashionMNIST, or a stand-in when it is not here.

PyTorch's quickstart trains a small network on FashionMNIST, which torchvision
downloads. To work offline, this module writes a stand-in in the very same
format when the real files are not under the data folder: 60000 training and
10000 test images of 28x28 pixels in raw IDX files, one simple shape per class,
shifted, scaled and noisy. Both are read by ``torchvision.datasets.FashionMNIST``
itself, so the real loading code and ``ToTensor`` run either way.

torchvision is imported only inside the functions that read data, so that
importing this module for the model alone stays cheap.
"""

from __future__ import annotations

import argparse
import gzip
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scenarios._runner import ScenarioError, cannot_write_into, folder, nearest_existing
from traces.basics.saving import write_atomically

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# The files torchvision's FashionMNIST reads from <root>/FashionMNIST/raw/, with the
# shape each one holds (the downloaded .gz files are unpacked to these names).
FILES = {
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}
STANDIN_FOLDER = "standin"  # the stand-in's root, inside the data folder
STANDIN_SEED = 0
UBYTE = 0x08  # the IDX type code of unsigned bytes


class NeuralNetwork(nn.Module):
    """The quickstart's model, exactly as in the tutorial."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


class DataError(ScenarioError):
    """A problem with the data that the user can fix; the message says how, on one line."""


@dataclass
class FashionData:
    training_data: object  # torchvision.datasets.FashionMNIST
    test_data: object
    is_standin: bool
    raw_folder: Path  # where the four files are
    generated_seconds: float | None = None  # how long writing the stand-in took, if it was written now
    rebuilt_because: str | None = None  # what was wrong with the stand-in that was there, if it was rebuilt
    unpacked: list[str] | None = None  # the real files unpacked now from their .gz

    def describe(self) -> str:
        """One line: which data is in use, how it got there, and how to get the real data."""
        if not self.is_standin:
            unpacked = f" (unpacked now from {', '.join(self.unpacked)})" if self.unpacked else ""
            return f"Data: FashionMNIST from {self.raw_folder}{unpacked}"
        made = ""
        if self.rebuilt_because is not None:
            made = f", rebuilt now in {self.generated_seconds:.1f} s because {self.rebuilt_because}"
        elif self.generated_seconds is not None:
            made = f", generated now in {self.generated_seconds:.1f} s"
        return (
            f"Data: the offline stand-in for FashionMNIST in {self.raw_folder} (one simple shape per class{made}); "
            "to train on the real FashionMNIST, run once with --download"
        )


def raw_folder_of(root: Path) -> Path:
    return Path(root) / "FashionMNIST" / "raw"


def has_all_files(root: Path) -> bool:
    return all((raw_folder_of(root) / name).is_file() for name in FILES)


def data_folder(text: str) -> Path:
    """--data's check: a folder that holds the data, or where it can be written now (the stand-in, unpacked files)."""
    data = folder(text)
    if not (has_all_files(data) or has_all_files(data / STANDIN_FOLDER)):
        problem = cannot_write_into(nearest_existing(data))
        if problem:
            raise argparse.ArgumentTypeError(f"{problem} (the data has to be written there first)")
    return data


def load_fashion_mnist(data: Path = Path("data"), download: bool = False) -> FashionData:
    """The training and test sets, read by torchvision's FashionMNIST with ToTensor.

    Real FashionMNIST when its files are under ``data`` (unpacked or as the
    downloaded ``.gz`` files, which are unpacked beside them as torchvision's
    download does) or ``download`` is set; otherwise the stand-in, written under
    ``data/standin`` the first time, and again when a file of it is damaged.
    """
    from torchvision import datasets
    from torchvision.transforms import ToTensor

    data = Path(data)
    raw_folder = raw_folder_of(data)
    generated_seconds = rebuilt_because = unpacked = None
    if download:
        download_fashion_mnist(data)
        root = data
    elif any((raw_folder / name).is_file() or (raw_folder / f"{name}.gz").is_file() for name in FILES):
        unpacked = unpack_gz_files(raw_folder)
        missing = [name for name in FILES if not (raw_folder / name).is_file()]
        if missing:
            raise DataError(
                f"{raw_folder} lacks {', '.join(missing)}: run with --download to fetch it, "
                f"or delete {raw_folder} to use the offline stand-in"
            )
        root = data
    else:
        root = data / STANDIN_FOLDER
        rebuilt_because = standin_problem(root) if raw_folder_of(root).exists() else None
        generated_seconds = ensure_standin(root)
    raw_folder = raw_folder_of(root)
    check_files(raw_folder, is_standin=root != data)

    # As in the tutorial, which passes download=True here; this module downloads above, only when asked.
    training_data = datasets.FashionMNIST(root=root, train=True, download=False, transform=ToTensor())
    test_data = datasets.FashionMNIST(root=root, train=False, download=False, transform=ToTensor())
    return FashionData(training_data, test_data, root != data, raw_folder, generated_seconds, rebuilt_because, unpacked)


def unpack_gz_files(raw_folder: Path) -> list[str]:
    """Unpack ``<name>.gz`` for each file that is there only packed; returns the .gz files unpacked.

    torchvision's FashionMNIST reads only the unpacked files; its download
    unpacks them the same way, beside the .gz files.
    """
    unpacked = []
    for name in FILES:
        packed, path = raw_folder / f"{name}.gz", raw_folder / name
        if path.is_file() or not packed.is_file():
            continue
        problem = cannot_write_into(raw_folder)
        if problem:
            raise DataError(f"{packed} needs unpacking, but {problem}: unpack it there yourself (gunzip -k)")
        try:
            content = gzip.decompress(packed.read_bytes())  # 47 MB at most, once
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise DataError(
                f"data file {packed} is damaged ({error}): delete it and run with --download to fetch it again"
            ) from None
        write_atomically(path, content)
        unpacked.append(packed.name)
    return unpacked


def download_fashion_mnist(data: Path) -> None:
    """Fetch the real FashionMNIST into ``data`` (torchvision skips files it already has)."""
    from torchvision import datasets

    try:
        datasets.FashionMNIST(root=data, train=True, download=True)
    except (RuntimeError, OSError) as error:
        reason = " ".join(str(error).split())  # torchvision's message spans several lines
        raise DataError(
            f"could not download FashionMNIST into {data}: {reason} "
            "(check the network, or run without --download to use the offline stand-in)"
        ) from None


# --- The files ---------------------------------------------------------------------


def idx_header(shape: tuple[int, ...]) -> bytes:
    """The header of an IDX file of unsigned bytes: a magic number, then each dimension."""
    return bytes([0, 0, UBYTE, len(shape)]) + b"".join(size.to_bytes(4, "big") for size in shape)


def read_header(path: Path) -> tuple[int, ...] | None:
    """The shape an IDX file of unsigned bytes declares, or None if its header is not one."""
    with open(path, "rb") as file:
        start = file.read(4)
        if len(start) < 4 or start[:3] != bytes([0, 0, UBYTE]) or not 1 <= start[3] <= 3:
            return None
        dims = file.read(4 * start[3])
    if len(dims) < 4 * start[3]:
        return None
    return tuple(int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4))


def file_problem(path: Path, shape: tuple[int, ...]) -> str | None:
    """What is wrong with one of the four files, or None when it has the expected shape and size."""
    declared = read_header(path)
    if declared is None:
        return "is not an IDX file of unsigned bytes"
    if declared[1:] != shape[1:] or len(declared) != len(shape):
        return f"holds shape {list(declared)}, not [{', '.join(['N', *map(str, shape[1:])])}]"
    expected = len(idx_header(declared)) + math.prod(declared)
    size = path.stat().st_size
    if size != expected:
        return f"is {'truncated' if size < expected else 'too long'}: {size} bytes instead of {expected}"
    return None


def check_files(raw_folder: Path, is_standin: bool) -> None:
    """Raise DataError naming the first truncated or corrupt file, and what to do about it."""
    remedy = (
        "delete it and run again to regenerate the stand-in"
        if is_standin
        else "delete it and run with --download to fetch it again"
    )
    counts = {}
    for name, shape in FILES.items():
        path = raw_folder / name
        problem = file_problem(path, shape)
        if problem is None and name.endswith("labels-idx1-ubyte"):
            labels = path.read_bytes()[len(idx_header(shape)) :]
            if labels and max(labels) >= len(CLASSES):
                problem = f"has label {max(labels)}; labels are 0 to {len(CLASSES) - 1}"
        if problem is not None:
            raise DataError(f"data file {path} {problem}: {remedy}")
        counts[name] = read_header(path)[0]
    for split in ("train", "t10k"):
        images, labels = counts[f"{split}-images-idx3-ubyte"], counts[f"{split}-labels-idx1-ubyte"]
        if images != labels:
            path = raw_folder / f"{split}-labels-idx1-ubyte"
            raise DataError(f"data file {path} has {labels} labels for {images} images: {remedy}")


# --- The stand-in ------------------------------------------------------------------


def standin_problem(root: Path) -> str | None:
    """What is wrong with the stand-in under ``root`` (a file missing or damaged), or None."""
    for name, shape in FILES.items():
        path = raw_folder_of(root) / name
        if not path.is_file():
            return f"{name} was missing"
        problem = file_problem(path, shape)
        if problem is not None:
            return f"{name} {problem.replace('is ', 'was ', 1)}"
    return None


def ensure_standin(root: Path, seed: int = STANDIN_SEED) -> float | None:
    """Write the stand-in under ``root`` unless it is there already, with every file whole.

    Returns the seconds writing took, or None when the files were already there.
    """
    if standin_problem(root) is None:
        return None
    problem = cannot_write_into(nearest_existing(Path(root)))
    if problem:
        raise DataError(f"the offline stand-in must be written to {root}, but {problem}: choose another --data")
    start = time.perf_counter()
    write_standin(root, seed)
    return time.perf_counter() - start


def write_standin(root: Path, seed: int = STANDIN_SEED) -> Path:
    """Write the four stand-in files under ``root/FashionMNIST/raw``; returns that folder."""
    raw_folder = Path(root) / "FashionMNIST" / "raw"
    raw_folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for split in ("train", "t10k"):
        count = FILES[f"{split}-labels-idx1-ubyte"][0]
        labels = torch.randint(len(CLASSES), (count,), generator=generator, dtype=torch.uint8)
        images = standin_images(labels, generator)
        for name, tensor in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
            write_atomically(raw_folder / name, idx_header(tuple(tensor.shape)) + tensor.numpy().tobytes())
    return raw_folder


def class_shapes() -> torch.Tensor:
    """One 28x28 silhouette per class, values in [0, 1], drawn from rectangles and slopes."""
    y, x = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")

    def box(top, bottom, left, right):
        return (y >= top) & (y <= bottom) & (x >= left) & (x <= right)

    neck = ((x - 13.5) ** 2 / 9 + (y - 5) ** 2 / 4) <= 1
    torso = box(5, 25, 8, 19)
    short_sleeves = box(5, 11, 3, 24) & (y - 5 >= (8 - x) * 0.6) & (y - 5 >= (x - 19) * 0.6)
    long_sleeves = box(5, 23, 3, 6) | box(5, 23, 21, 24) | box(5, 8, 3, 24)
    opening = box(6, 25, 13, 14)
    buttons = (x >= 13) & (x <= 14) & (y >= 8) & (y % 4 < 1.5)
    sneaker_top = torch.where(x < 14, 16 - (x - 2) * 0.1, 15 - (x - 14) * 0.4)

    shapes = [
        (torso | short_sleeves) & ~neck,  # T-shirt/top
        box(2, 6, 9, 18) | box(2, 26, 9, 12) | box(2, 26, 15, 18),  # Trouser: a waist and two legs
        (box(5, 22, 8, 19) | long_sleeves) & ~neck,  # Pullover
        (y >= 4) & (y <= 26) & ((x - 13.5).abs() <= 2.5 + (y - 4) * 0.33),  # Dress: wider downwards
        (box(4, 26, 7, 20) | long_sleeves) & ~opening,  # Coat: long, open down the front
        box(22, 24, 2, 25) | ((y >= 13) & (y <= 21) & ((x + y) % 6 < 2) & (x >= 4) & (x <= 23)),  # Sandal: straps
        (torso | long_sleeves) & ~neck & ~buttons,  # Shirt: long sleeves and buttons
        box(11, 22, 2, 25) & (y >= sneaker_top),  # Sneaker: low at the toe, higher at the heel
        box(11, 25, 4, 23) | ((((x - 13.5) / 6) ** 2 + ((y - 11) / 7) ** 2 - 1).abs() < 0.3) & (y < 11),  # Bag
        box(3, 23, 13, 21) | box(15, 23, 3, 21) | box(23, 25, 3, 8) | box(23, 25, 16, 21),  # Ankle boot
    ]
    return torch.stack([shape.float() for shape in shapes])


SHIFT = 3  # pixels an image may move in each direction
CHUNK = 10000  # images made at a time, so that the float buffers stay small


def tilted_and_scaled(shapes: torch.Tensor) -> torch.Tensor:
    """Each class's shape at 4 sizes and 5 tilts, with a border of SHIFT pixels: uint8 [10, 20, 34, 34]."""
    import torch.nn.functional as F

    scales, angles = torch.meshgrid(torch.tensor([0.85, 0.92, 1.0, 1.08]), torch.linspace(-0.15, 0.15, 5), indexing="ij")
    scales, angles = scales.flatten(), angles.flatten()
    cos, sin, zero = torch.cos(angles) / scales, torch.sin(angles) / scales, torch.zeros_like(angles)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    size = 28 + 2 * SHIFT
    grid = F.affine_grid(theta, [len(theta), 1, size, size], align_corners=False)
    bordered = F.pad(shapes, (SHIFT,) * 4).expand(len(theta), -1, -1, -1)  # [variants, 10, size, size]
    variants = F.grid_sample(bordered, grid, align_corners=False).transpose(0, 1)
    return (variants * 255).round().to(torch.uint8)


def standin_images(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images of the given classes as uint8 [N, 28, 28]: each class's shape, moved and noisy."""
    count = len(labels)
    variants = tilted_and_scaled(class_shapes())
    variant = torch.randint(variants.shape[1], (count,), generator=generator)
    shift_y, shift_x = torch.randint(-SHIFT, SHIFT + 1, (2, count, 1), generator=generator)
    pixels = torch.arange(28)
    images = torch.empty(count, 28, 28, dtype=torch.uint8)
    for start in range(0, count, CHUNK):
        part = slice(start, start + CHUNK)
        n = len(labels[part])
        # Cut a 28x28 window out of each bordered shape: that moves the shape by up to SHIFT pixels.
        rows = (pixels + SHIFT - shift_y[part])[:, :, None]
        columns = (pixels + SHIFT - shift_x[part])[:, None, :]
        moved = variants[labels[part].long()[:, None, None], variant[part, None, None], rows, columns].float()
        # Cloth of uneven brightness, plus noise.
        moved.mul_(torch.rand(n, 1, 1, generator=generator).mul_(0.5).add_(0.5))
        moved.mul_(torch.rand(n, 28, 28, generator=generator).mul_(0.25).add_(0.75))
        moved.add_(torch.randn(n, 28, 28, generator=generator).mul_(20))
        images[part] = moved.clamp_(0, 255).round_().to(torch.uint8)
    return images
