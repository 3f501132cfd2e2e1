"""The Python engine's backward time against torch's C++ engine, per model.

    .venv/bin/python benchmarks/engine_speed.py [--repeat N] [--models resnet18,...]

Each model runs forward once per measurement (not timed) and then backward,
timed, through torch's engine (``loss.backward()``) and through the mirror
(``traces.mirror.engine.backward(loss)``); the figure is the median of ``--repeat``
runs of each, and the ratio mirror / torch. Target (issue 20): at most 3x on
resnet18, batch 8 of 64x64, CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from traces.mirror import engine

MODELS = ("resnet18", "mobilenet_v3_small", "densenet121", "vit_b_16")


def build(name: str):
    from torchvision import models

    if name == "vit_b_16":
        return models.vit_b_16(weights=None, image_size=64), torch.randn(8, 3, 64, 64)
    return getattr(models, name)(weights=None), torch.randn(8, 3, 64, 64)


def backward_seconds(model, images, run_backward) -> float:
    model.zero_grad(set_to_none=True)
    loss = model(images).sum()
    start = time.perf_counter()
    run_backward(loss)
    return time.perf_counter() - start


def measure(name: str, repeat: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model, images = build(name)
    model.eval()
    backward_seconds(model, images, torch.autograd.backward)  # warm up both
    backward_seconds(model, images, engine.backward)
    torch_s = statistics.median(backward_seconds(model, images, torch.autograd.backward) for _ in range(repeat))
    mirror_s = statistics.median(backward_seconds(model, images, engine.backward) for _ in range(repeat))
    return torch_s, mirror_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/engine_speed.py", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per engine (default 5; the median counts)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated (default {','.join(MODELS)})")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown or args.repeat < 1:
        print(f"{parser.prog}: error: unknown model {unknown[0]!r}" if unknown else
              f"{parser.prog}: error: --repeat must be 1 or more", file=sys.stderr)
        return 2
    print(f"backward, batch 8 of 64x64, CPU, {torch.get_num_threads()} threads, median of {args.repeat}")
    print(f"{'model':<20} {'torch s':>9} {'python s':>9} {'ratio':>6}")
    for name in models:
        torch_s, mirror_s = measure(name, args.repeat)
        print(f"{name:<20} {torch_s:9.4f} {mirror_s:9.4f} {mirror_s / torch_s:6.2f}")
    print("target: ratio <= 3 on resnet18")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
