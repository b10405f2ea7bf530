"""CUDA path of `vmrnn train` and `vmrnn predict` (bf16 autocast, DataLoader workers, device placement).

CPU siblings: tests/test_train.py and tests/test_predict.py run the same commands with `--device cpu`.
"""

import csv
import math

import numpy as np
import pytest
import rasterio
import torch
from rio_cogeo.cogeo import cog_validate

from vmrnn_cli import synthetic
from vmrnn_cli.prepare import prepare

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CPU siblings in "
                                 "test_train.py / test_predict.py)")]


def test_train_and_predict_on_cuda(cli, tmp_path) -> None:
    tifs = synthetic.make_geotiff_series(tmp_path / "data", n_frames=30, height=40, width=48)
    cube = tmp_path / "cube.zarr"
    prepare([str(p) for p in tifs], cube, input_frames=3, output_frames=2, patch_size=16, stride=8,
            split=(0.6, 0.2, 0.2))
    run = tmp_path / "run"
    code, _, err = cli(["train", cube, "-o", run, "--device", "cuda", "--embed-dim", "16", "--depths", "2",
                        "--epochs", "2", "--batch-size", "8", "--workers", "2"])
    assert code == 0, err
    assert "on cuda" in err
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert all(math.isfinite(float(r["train_loss"])) and math.isfinite(float(r["val_loss"])) for r in rows)
    assert (run / "best.pt").is_file()

    out = tmp_path / "forecast"
    code, stdout, err = cli(["predict", "-m", run, "--horizon", "3", *tifs[-3:], "-o", out,
                             "--device", "cuda", "--batch-size", "4"])
    assert code == 0, err
    paths = stdout.split()
    assert len(paths) == 3
    with rasterio.open(tifs[0]) as ref:
        crs, transform, shape = ref.crs, ref.transform, ref.shape
    for path in paths:
        assert cog_validate(path)[0]
        with rasterio.open(path) as src:
            assert (src.crs, src.transform, src.shape) == (crs, transform, shape)
            data = src.read(1, masked=True)
        assert data.count() > 0.5 * data.size
        assert np.isfinite(data.compressed()).all()
