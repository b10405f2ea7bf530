"""Forecasting a whole scene: tiling, rollout, and `predict`."""
