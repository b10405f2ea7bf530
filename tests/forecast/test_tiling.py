"""Tiling with overlap and blending: covers any scene, no seams, and equals the untiled forecast in one tile."""

import itertools

import numpy as np
import pytest
import torch
from support.tiling_reference import forecast_tiled_reference

from models import build_model
from vmrnn_cli.forecast.predict import scene_on
from vmrnn_cli.forecast.rollout import rollout
from vmrnn_cli.forecast.tiling import FLOOR, blend_window, coverage, fits_on, forecast_tiled, tile_starts

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
    ),
]


@pytest.mark.parametrize("size, tile, overlap", [(16, 16, 4), (10, 16, 4), (37, 16, 4), (53, 16, 0), (100, 16, 15)])
def test_tiles_cover_the_axis_with_overlap(size: int, tile: int, overlap: int) -> None:
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile >= size
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))
    assert all(b > a for a, b in itertools.pairwise(starts))


def test_overlap_must_be_smaller_than_the_tile() -> None:
    with pytest.raises(ValueError):
        tile_starts(40, 16, 16)


def test_blend_window_is_smooth_positive_and_flat_inside() -> None:
    window = blend_window(16, 4)
    assert window.shape == (16, 16)
    assert window.min() >= FLOOR**2 > 0
    assert window[4:12, 4:12].min() == pytest.approx(1.0)
    np.testing.assert_allclose(window, window.T)
    np.testing.assert_allclose(window, window[::-1, ::-1])
    assert np.all(np.diff(window[8, :8]) >= 0)
    assert blend_window(16, 0).min() == pytest.approx(1.0)


def pixelwise(tiles: torch.Tensor) -> torch.Tensor:
    """A 'model' that only looks at each pixel: any correct blending must reproduce it exactly."""
    return torch.stack([tiles[:, -1] * 2 + 1, tiles.mean(dim=1)], dim=1)


@pytest.mark.parametrize("height, width, overlap", [(37, 53, 4), (16, 16, 4), (9, 40, 6), (40, 40, 0)])
def test_blending_has_no_seams(height: int, width: int, overlap: int) -> None:
    frames = torch.randn(3, 2, height, width)
    out = forecast_tiled(pixelwise, frames, tile=16, overlap=overlap, batch_size=3)
    assert out.shape == (2, 2, height, width)
    torch.testing.assert_close(out, pixelwise(frames[None])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overlap", [0, 4, 8])
def test_tiled_equals_one_tile_forecast_with_the_model(overlap: int) -> None:
    torch.manual_seed(0)
    net = build_model("vmrnn-b", in_channels=2, img_size=(16, 16), patch_size=4, embed_dim=16, depths=1).eval()
    frames = torch.randn(3, 2, 16, 16)
    frames[0, 0, :2, :2] = float("nan")
    direct = rollout(net, frames[None], 4, torch.device("cpu"))[0]
    tiled = forecast_tiled(lambda t: rollout(net, t, 4, torch.device("cpu")), torch.nan_to_num(frames), 16, overlap, 2)
    assert tiled.shape == (4, 2, 16, 16)
    torch.testing.assert_close(tiled, direct, rtol=1e-5, atol=1e-5)


def mixing(tiles: torch.Tensor) -> torch.Tensor:
    """A 'model' whose output pixels mix their neighbours (3 x 3, zero-padded): overlapping tiles disagree."""
    batch, frames, channels, height, width = tiles.shape
    kernel = torch.randn(3 * channels, frames * channels, 3, 3, generator=torch.Generator().manual_seed(1))
    out = torch.nn.functional.conv2d(
        tiles.reshape(batch, frames * channels, height, width), kernel.to(tiles.device), padding=1
    )
    return out.reshape(batch, 3, channels, height, width)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "height, width, overlap, batch_size",
    [(37, 53, 4, 3), (16, 16, 4, 1), (9, 40, 6, 2), (70, 45, 0, 5), (100, 64, 15, 7)],
)
def test_device_blend_equals_the_reference(device: str, height: int, width: int, overlap: int, batch_size: int) -> None:
    frames = torch.randn(4, 2, height, width, generator=torch.Generator().manual_seed(height + width))
    reference = forecast_tiled_reference(mixing, frames, 16, overlap, batch_size)
    fast = forecast_tiled(mixing, frames.to(device), 16, overlap, batch_size)
    assert fast.device.type == device and fast.shape == reference.shape == (3, 2, height, width)
    torch.testing.assert_close(fast.cpu(), reference, rtol=1e-5, atol=1e-5)


def test_weight_sum_is_the_outer_product_of_coverages() -> None:
    weight_sum = np.zeros((37, 53))
    for y in tile_starts(37, 16, 5):
        for x in tile_starts(53, 16, 5):
            weight_sum[y : y + 16, x : x + 16] += blend_window(16, 5)
    np.testing.assert_allclose(np.outer(coverage(37, 16, 5), coverage(53, 16, 5)), weight_sum, rtol=1e-6)


def test_scene_falls_back_to_the_cpu_when_it_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = np.random.default_rng(0).normal(size=(3, 2, 40, 50)).astype(np.float32)
    needed = (3 + 4) * 2 * 40 * 50 * 4  # the context and a 4-frame canvas, float32
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (needed, 2 * needed))
    assert not fits_on(torch.device("cuda"), needed)
    assert fits_on(torch.device("cuda"), needed // 2) and fits_on(torch.device("cpu"), 10 * needed)
    original = frames.copy()
    scene = scene_on(frames, 4, torch.device("cuda"))
    assert scene.device.type == "cpu"
    np.testing.assert_array_equal(scene.numpy(), original)
    scene += 1  # a copy: the caller's frames stay as they were
    np.testing.assert_array_equal(frames, original)
