"""The evaluation as text: strict JSON, and a rich table of the scores per lead time on stderr."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from vmrnn_cli.io.outputs import WRITTEN_BY

METHODS = ("model", "persistence", "climatology")


def _plain(value: Any) -> Any:
    """NaN and infinities become null, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_json(result: dict[str, Any]) -> str:
    """The evaluation as strict JSON text (NaN/inf as null), marked as vmrnn's (`written_by`)."""
    return json.dumps(_plain({**result, "written_by": WRITTEN_BY}), indent=2) + "\n"


def print_table(result: dict[str, Any], console: Console | None = None) -> None:
    """The scores per lead time as a rich table on stderr."""
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    table = Table(title=f"{result['part']} part: {result['windows']} window(s), scores in physical units")
    columns = (
        [("RMSE", "rmse", m) for m in METHODS]
        + [("MAE", "mae", "model")]
        + [("SSIM", "ssim", m) for m in METHODS]
        + [("PSNR", "psnr", "model")]
    )
    table.add_column("lead", justify="right")
    for label, _, method in columns:
        table.add_column(f"{label}\n{method}", justify="right")
    table.add_column("skill", justify="right")
    for i, lead in enumerate(result["lead_times"]):
        cells = [f"{result[method][score][i]:.4g}" for _, score, method in columns]
        table.add_row(str(lead), *cells, f"{result['skill'][i]:+.3f}")
    console.print(table)
    console.print("skill = 1 - MSE model / MSE persistence (> 0: the model beats persistence)")
