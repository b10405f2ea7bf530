"""VMRNN-B / VMRNN-D: shapes on awkward grids, gradients, memory of the state, parameter parity, overfitting."""

from __future__ import annotations

import pytest
import torch

from models import VMRNN_B, VMRNN_D, build_model
from models.ss2d import cross_merge, dt_projection, to_scan_order

TINY = {
    "vmrnn-b": dict(patch_size=4, embed_dim=16, depths=2),
    "vmrnn-d": dict(patch_size=2, embed_dim=16, depths=(1, 1)),
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (lambda: VMRNN_B(2, img_size=(32, 32)), 2_579_970),  # TaxiBJ
        (lambda: VMRNN_D(1, img_size=(64, 64)), 9_674_113),  # Moving MNIST
        (lambda: VMRNN_B(1, img_size=(128, 128), patch_size=2, depths=6), 1_214_721),  # KTH
    ],
    ids=["vmrnn-b-taxibj", "vmrnn-d-mmnist", "vmrnn-b-kth"],
)
def test_parameter_counts_equal_official(model, expected):
    assert count(model()) == expected


@pytest.mark.parametrize("arch", ["vmrnn-b", "vmrnn-d"])
def test_odd_grid_forward_backward(arch):
    torch.manual_seed(0)
    model = build_model(arch, in_channels=3, img_size=(37, 53), **TINY[arch])
    frames = torch.randn(2, 2, 3, 37, 53)
    out = model(frames, horizon=2)
    assert out.shape == (2, 2 - 1 + 2, 3, 37, 53)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained)
    assert any(p.grad.abs().sum() > 0 for p in trained)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


@pytest.mark.parametrize("arch", ["vmrnn-b", "vmrnn-d"])
def test_state_carries_first_frame_to_last_output(arch):
    torch.manual_seed(0)
    model = build_model(arch, in_channels=1, img_size=(16, 16), **TINY[arch]).eval()
    frames = torch.rand(1, 4, 1, 16, 16)
    changed = frames.clone()
    changed[:, 0] += 1.0
    with torch.no_grad():
        base, moved = model(frames, horizon=1), model(changed, horizon=1)
    assert (base[:, -1] - moved[:, -1]).abs().max() > 1e-6
    assert torch.equal(base[:, 0], model(frames[:, :1], horizon=1)[:, 0])


def test_scan_backends_agree_inside_model():
    torch.manual_seed(0)
    model = VMRNN_B(1, img_size=(8, 12), patch_size=2, embed_dim=16, depths=1, scan_backend="torch").eval()
    frames = torch.randn(1, 2, 1, 8, 12)
    with torch.no_grad():
        fast = model(frames, horizon=1)
        for module in model.modules():
            if hasattr(module, "scan_backend"):
                module.scan_backend = "reference"
        slow = model(frames, horizon=1)
    assert torch.allclose(fast, slow, rtol=1e-4, atol=1e-5)


def test_dt_projection_is_each_directions_own_and_contiguous_in_inference():
    x_dbl = torch.randn(2, 3, 5, 4, 8 + 2 * 4, requires_grad=True)  # dt is a strided slice of x_dbl, as in SS2D
    weight = torch.randn(4, 6, 8, requires_grad=True)
    want = torch.einsum("bhwkr,kdr->bhwkd", x_dbl[..., :8], weight)
    with torch.no_grad():
        fast = dt_projection(x_dbl[..., :8], weight)
    assert fast.is_contiguous() and fast.shape == (2, 3, 5, 4, 6)
    torch.testing.assert_close(fast, want.detach())
    trained = dt_projection(x_dbl[..., :8], weight)
    torch.testing.assert_close(trained, want)
    assert trained.requires_grad


def test_scan_order_round_trip():
    """Reading the grid in the four scan orders and merging back sums four copies of every token."""
    x = torch.randn(2, 5, 7, 3)
    xs = to_scan_order(x.unsqueeze(3).expand(2, 5, 7, 4, 3))
    assert torch.allclose(cross_merge(xs, 5, 7), 4 * x)
    assert torch.equal(xs[:, 1, :, 1], x[:, 1, 0])  # column-major: the second token is row 1
    assert torch.equal(xs[:, 3, :, 0], x[:, -1, -1])  # reversed orders start at the last token


def test_sigmoid_head_and_validation():
    model = VMRNN_B(2, img_size=(8, 8), patch_size=2, embed_dim=16, depths=1, output_activation="sigmoid")
    out = model(torch.randn(1, 2, 2, 8, 8), horizon=3)
    assert out.shape == (1, 4, 2, 8, 8) and ((out > 0) & (out < 1)).all()
    with pytest.raises(ValueError, match="expected frames"):
        model(torch.randn(1, 2, 3, 8, 8), horizon=1)
    with pytest.raises(ValueError, match="horizon"):
        model(torch.randn(1, 2, 2, 8, 8), horizon=0)
    with pytest.raises(ValueError, match="power of 2"):
        VMRNN_B(1, patch_size=3)
    with pytest.raises(ValueError, match="output_activation"):
        VMRNN_B(1, output_activation="relu")


def test_build_model():
    assert isinstance(build_model("vmrnn-b", in_channels=1, embed_dim=16, depths=1), VMRNN_B)
    d = build_model("VMRNN-D", in_channels=1, embed_dim=16, depths=(1, 2))
    assert isinstance(d, VMRNN_D) and [len(c.blocks) for c in d.up_cells] == [2, 1]
    with pytest.raises(ValueError, match="unknown model architecture"):
        build_model("convlstm", in_channels=1)


def moving_square(frames: int = 6, size: int = 16) -> torch.Tensor:
    """A 4 x 4 bright square moving one pixel right and down per frame: (1, frames, 1, size, size)."""
    video = torch.zeros(1, frames, 1, size, size)
    for t in range(frames):
        video[0, t, 0, 2 + t : 6 + t, 3 + t : 7 + t] = 1.0
    return video


@pytest.mark.slow
def test_tiny_model_overfits_moving_square():
    torch.manual_seed(0)
    video = moving_square()
    model = VMRNN_B(1, img_size=(16, 16), patch_size=4, embed_dim=16, depths=1, output_activation="sigmoid")
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(video[:, :4], horizon=2), video[:, 1:])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] < losses[0] / 10:
            break
    assert losses[-1] < losses[0] / 10, f"loss {losses[0]:.4f} -> {losses[-1]:.4f} in {len(losses)} steps"
