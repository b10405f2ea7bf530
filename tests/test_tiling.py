"""Tiling with overlap and blending: covers any scene, no seams, and equals the untiled forecast in one tile."""

import numpy as np
import pytest
import torch

from models import build_model
from vmrnn_cli.predict import rollout
from vmrnn_cli.tiling import FLOOR, blend_window, forecast_tiled, tile_starts


@pytest.mark.parametrize("size, tile, overlap", [(16, 16, 4), (10, 16, 4), (37, 16, 4), (53, 16, 0), (100, 16, 15)])
def test_tiles_cover_the_axis_with_overlap(size: int, tile: int, overlap: int) -> None:
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile >= size
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert all(b > a for a, b in zip(starts, starts[1:]))


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
