"""Use the VMRNN network from Python, without the CLI: train a tiny VMRNN-B on moving squares and forecast.

Run: python examples/python_models.py [--steps 200]
Only `models` and torch are used; no raster I/O. Frames are (batch, time, channels, H, W) tensors.
"""

from __future__ import annotations

import argparse

import torch

from models import VMRNN_B


def moving_squares(batch: int, frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Bright 6x6 squares moving one pixel per frame in a random direction, on a dark background: (B, T, 1, H, W)."""
    out = torch.zeros(batch, frames, 1, size, size)
    start = torch.randint(0, size - 6, (batch, 2), generator=generator)
    step = torch.randint(-1, 2, (batch, 2), generator=generator)
    for b in range(batch):
        for t in range(frames):
            y, x = ((start[b] + step[b] * t) % (size - 6)).tolist()
            out[b, t, 0, y : y + 6, x : x + 6] = 1.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default: 200)")
    parser.add_argument("--size", type=int, default=24, help="frame height and width in pixels (default: 24)")
    args = parser.parse_args()

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    context, horizon = 4, 4
    # A small VMRNN-B; the paper's TaxiBJ preset is VMRNN_B(2, (32, 32), patch_size=4, embed_dim=128, depths=12).
    model = VMRNN_B(
        in_channels=1,
        img_size=(args.size, args.size),
        patch_size=4,
        embed_dim=32,
        depths=2,
        output_activation="sigmoid",
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)

    for step in range(args.steps):
        clip = moving_squares(8, context + horizon, args.size, generator)
        # Teacher forcing over the context, then the model's own outputs; output i predicts frame i + 1.
        prediction = model(clip[:, :context], horizon)
        loss = torch.nn.functional.mse_loss(prediction, clip[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  mse {loss.item():.4f}")

    model.eval()
    clip = moving_squares(16, context + horizon, args.size, generator)
    with torch.no_grad():
        forecast = model(clip[:, :context], horizon)[:, -horizon:]  # the last `horizon` outputs are the forecast
    persistence = clip[:, context - 1 : context].expand_as(forecast)
    truth = clip[:, context:]
    print(
        f"forecast {tuple(forecast.shape)}: mse {torch.mean((forecast - truth) ** 2):.4f}, "
        f"persistence mse {torch.mean((persistence - truth) ** 2):.4f}"
    )


if __name__ == "__main__":
    main()
