"""Verification: metrics, baselines, plots and `evaluate`."""
