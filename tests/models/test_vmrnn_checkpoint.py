"""Per-frame activation checkpointing (`checkpoint_steps`): same outputs and gradients, fewer saved activations."""

from __future__ import annotations

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from models import build_model, vmrnn

TINY = {
    "vmrnn-b": dict(patch_size=4, embed_dim=16, depths=2),
    "vmrnn-d": dict(patch_size=2, embed_dim=16, depths=(1, 1)),
}


def forward_backward(
    arch: str, checkpoint_steps: bool, drop_path: float = 0.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Output and parameter gradients of one training step of a tiny model (same weights and data every call)."""
    torch.manual_seed(0)
    model = build_model(arch, in_channels=2, img_size=(20, 24), drop_path=drop_path, **TINY[arch])
    model.checkpoint_steps = checkpoint_steps
    frames = torch.randn(2, 3, 2, 20, 24)
    out = model(frames, horizon=2)
    out.square().mean().backward()
    return out.detach(), {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("drop_path", [0.0, 0.5], ids=["deterministic", "drop-path"])
@pytest.mark.parametrize("arch", ["vmrnn-b", "vmrnn-d"])
def test_checkpointing_keeps_outputs_and_gradients(arch: str, drop_path: float) -> None:
    """With DropPath the recomputation must replay the same random masks as the forward did."""
    plain_out, plain_grads = forward_backward(arch, False, drop_path)
    ckpt_out, ckpt_grads = forward_backward(arch, True, drop_path)
    torch.testing.assert_close(ckpt_out, plain_out, rtol=1e-6, atol=1e-7)
    assert plain_grads.keys() == ckpt_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def saved_activation_bytes(arch: str, checkpoint_steps: bool) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves for backward in one forward pass."""
    torch.manual_seed(0)
    model = build_model(arch, in_channels=1, img_size=(16, 16), **TINY[arch])
    model.checkpoint_steps = checkpoint_steps
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.rand(2, 4, 1, 16, 16), horizon=4)
    return sum(saved.values())


@pytest.mark.parametrize("arch", ["vmrnn-b", "vmrnn-d"])
def test_checkpointing_saves_far_fewer_activations(arch: str) -> None:
    plain, ckpt = saved_activation_bytes(arch, False), saved_activation_bytes(arch, True)
    assert 0 < ckpt < plain / 5, (plain, ckpt)


def test_one_checkpoint_per_frame_and_none_without_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of the T_in - 1 + horizon steps is checkpointed in training; inference (no_grad) runs plain steps."""
    calls = []

    def counting_checkpoint(function, *args, **kwargs):
        calls.append(kwargs)
        return checkpoint(function, *args, **kwargs)

    monkeypatch.setattr(vmrnn, "checkpoint", counting_checkpoint)
    torch.manual_seed(0)
    model = build_model("vmrnn-b", in_channels=1, img_size=(16, 16), **TINY["vmrnn-b"])
    model.checkpoint_steps = True
    frames = torch.rand(1, 3, 1, 16, 16)
    model(frames, horizon=2)
    assert calls == [{"use_reentrant": False, "preserve_rng_state": False}] * 4
    with torch.no_grad():
        model(frames, horizon=2)
    assert len(calls) == 4
