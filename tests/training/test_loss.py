"""The masked MSE: NaN targets do not count, valid pixels count exactly as in a plain MSE."""

import torch

from vmrnn_cli.training.loss import masked_mse, masked_sse


def test_masked_mse_ignores_nan_targets() -> None:
    pred = torch.randn(2, 3, 1, 8, 8, requires_grad=True)
    target = torch.randn(2, 3, 1, 8, 8)
    target[0, :, :, :4] = float("nan")
    valid = torch.isfinite(target)
    loss = masked_mse(pred, target)
    torch.testing.assert_close(loss, ((pred - target)[valid] ** 2).mean())
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[~valid] == 0).all()
    _sse, count = masked_sse(pred, target)
    assert int(count) == int(valid.sum())


def test_all_nan_target_gives_zero_loss_and_zero_gradient() -> None:
    pred = torch.randn(1, 2, 1, 4, 4, requires_grad=True)
    loss = masked_mse(pred, torch.full((1, 2, 1, 4, 4), float("nan")))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert (pred.grad == 0).all()


def test_bf16_predictions_are_scored_in_float32() -> None:
    pred = torch.randn(1, 1, 1, 4, 4).bfloat16()
    target = torch.randn(1, 1, 1, 4, 4)
    assert masked_mse(pred, target).dtype == torch.float32
