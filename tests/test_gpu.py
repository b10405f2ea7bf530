"""CUDA path of `vmrnn train`, `vmrnn predict` and `vmrnn evaluate` (bf16 autocast, DataLoader workers, device
placement, CUDA graphs, torch.compile).

CPU siblings: tests/test_train.py, tests/test_predict.py and tests/test_evaluate.py run the same commands with
`--device cpu`; tests/test_train_modes.py checks the CUDA-graph dispatch and wiring with plain callables in place of
the graph; tests/test_train_workers.py checks that DataLoader workers never free the parent's garbage.
"""

import csv
import json
import math

import numpy as np
import pytest
import rasterio
import torch
from rio_cogeo.cogeo import cog_validate

from models import build_model
from vmrnn_cli import synthetic
from vmrnn_cli.data.cube import open_cube
from vmrnn_cli.data.dataset import WindowDataset
from vmrnn_cli.data.prepare import prepare
from vmrnn_cli.forecast.rollout import MAX_GPU_BATCH
from vmrnn_cli.options import PrepareOptions
from vmrnn_cli.training.loss import masked_sse
from vmrnn_cli.training.step_modes import graphed_forward
from vmrnn_cli.verify.evaluate import MAX_AUTO_WINDOWS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU (CPU siblings in test_train.py / test_predict.py / test_train_modes.py)",
    ),
]


def test_train_and_predict_on_cuda(cli, tmp_path) -> None:
    tifs = synthetic.make_geotiff_series(tmp_path / "data", n_frames=30, height=40, width=48)
    cube = tmp_path / "cube.zarr"
    prepare(
        [str(p) for p in tifs],
        cube,
        PrepareOptions(input_frames=3, output_frames=2, window=16, stride=8, split=(0.6, 0.2, 0.2)),
    )
    run = tmp_path / "run"
    code, _, err = cli(
        [
            "train",
            cube,
            "-o",
            run,
            "--device",
            "cuda",
            "--embed-dim",
            "16",
            "--depths",
            "2",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--workers",
            "2",
        ]
    )
    assert code == 0, err
    assert "on cuda" in err
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert all(math.isfinite(float(r["train_loss"])) and math.isfinite(float(r["val_loss"])) for r in rows)
    assert (run / "best.pt").is_file()

    out = tmp_path / "forecast"
    code, stdout, err = cli(
        ["predict", "-m", run, "--horizon", "3", *tifs[-3:], "-o", out, "--device", "cuda", "--batch-size", "4"]
    )
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

    auto = tmp_path / "forecast_auto"  # no --batch-size: as many tiles per pass as fit (here the cap), same forecast
    code, stdout, err = cli(
        ["predict", "-m", run, "--horizon", "3", *tifs[-3:], "-o", auto, "--device", "cuda", "--json"]
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert 4 < summary["batch_size"] <= MAX_GPU_BATCH
    for path, again in zip(paths, summary["paths"]):
        with rasterio.open(path) as src_a, rasterio.open(again) as src_b:
            a, b = src_a.read(1, masked=True), src_b.read(1, masked=True)
        assert (a.mask == b.mask).all()
        # bf16 matmuls may round differently for another batch shape; the blend is the same
        assert np.abs(b - a).mean() <= 1e-2 * np.abs(a).mean()

    scores = {}  # evaluate: the default batch (as many windows as fit, at most MAX_AUTO_WINDOWS) scores the same
    for label, size in (("given", ["--batch-size", "2"]), ("auto", [])):
        code, stdout, err = cli(["evaluate", cube, "-m", run, "--device", "cuda", "--json", *size])
        assert code == 0, err
        scores[label] = json.loads(stdout)
    assert scores["given"]["batch_size"] == 2 and 2 < scores["auto"]["batch_size"] <= MAX_AUTO_WINDOWS
    assert np.allclose(scores["auto"]["model"]["mse"], scores["given"]["model"]["mse"], rtol=1e-2)


@pytest.mark.parametrize("grad_checkpoint", [False, True], ids=["plain", "grad-checkpoint"])
def test_graphed_step_equals_eager_step(grad_checkpoint: bool) -> None:
    """Same loss and parameter gradients under bf16 autocast, on new inputs at every replay."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    net = build_model("vmrnn-b", in_channels=2, img_size=(16, 16), patch_size=4, embed_dim=16, depths=2).to(device)
    net.checkpoint_steps = grad_checkpoint
    forward = graphed_forward(net, (4, 3, 2, 16, 16), 2, device, bf16=True)
    trained = [p for p in net.parameters() if p.requires_grad]

    def step(model, batch: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        net.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(torch.nan_to_num(batch[:, :3]), 2)
        sse, count = masked_sse(out, batch[:, 1:])
        loss = sse / count.clamp(min=1)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in trained]

    for size in (4, 4, 3):  # two full batches (graph replays), then a partial one (eager)
        batch = torch.randn(size, 5, 2, 16, 16, device=device)
        batch[0, -1, :, :4] = math.nan  # nodata in a target frame
        graph_loss, graph_grads = step(forward, batch)
        eager_loss, eager_grads = step(net, batch)
        assert graph_loss == pytest.approx(eager_loss, rel=1e-3)
        # eager autocast caches each weight's bf16 copy, so the frames' gradients of it are summed in bf16;
        # the graph casts per frame and sums in float32: the two differ by bf16 rounding, not more
        for p, graph_grad, eager_grad in zip(trained, graph_grads, eager_grads):
            assert torch.isfinite(graph_grad).all()
            assert (graph_grad - eager_grad).norm() <= 2e-2 * eager_grad.norm() + 1e-6, tuple(p.shape)


@pytest.mark.parametrize(
    "options, logged",
    [
        ([], "CUDA graphs"),
        (["--cuda-graphs", "--grad-checkpoint"], "per-frame activation checkpointing, CUDA graphs"),
        (["--compile"], "torch.compile"),
    ],
    ids=["default", "graphs+ckpt", "compile"],
)
def test_train_step_modes_follow_a_plain_run(cli, tmp_path, options: list[str], logged: str) -> None:
    """End to end, with a partial last batch every epoch (run eagerly); the losses follow those of a plain (eager)
    run. Without options, one GPU trains with CUDA graphs.
    --compile goes through torch.compile with the Triton scan (a torch.autograd.Function) under bf16 autocast."""
    tifs = synthetic.make_geotiff_series(tmp_path / "data", n_frames=30, height=40, width=48)
    cube = tmp_path / "cube.zarr"
    prepare(
        [str(p) for p in tifs],
        cube,
        PrepareOptions(input_frames=3, output_frames=2, window=16, stride=8, split=(0.6, 0.2, 0.2)),
    )
    windows = len(WindowDataset(open_cube(cube), "train"))
    batch = next(b for b in (12, 11, 10, 9) if windows % b)
    common = ["--device", "cuda", "--embed-dim", "16", "--depths", "2", "--epochs", "2", "--batch-size", batch]
    code, _, err = cli(["train", cube, "-o", tmp_path / "plain", *common, "--no-cuda-graphs"])
    assert code == 0, err
    code, _, err = cli(["train", cube, "-o", tmp_path / "modes", *common, *options])
    assert code == 0, err
    assert logged in err
    rows = {}
    for name in ("plain", "modes"):
        with open(tmp_path / name / "metrics.csv") as handle:
            rows[name] = list(csv.DictReader(handle))
    assert len(rows["modes"]) == 2
    for plain, modes in zip(rows["plain"], rows["modes"]):
        for key in ("train_loss", "val_loss"):
            assert math.isfinite(float(modes[key]))
            assert float(modes[key]) == pytest.approx(float(plain[key]), rel=5e-2)


def test_workers_survive_the_parents_cuda_garbage(cli, tiny_run, tmp_path, workers_collect_first) -> None:
    """A cycle holding a CUDA tensor used on a second stream when the DataLoader workers fork (CUDA-graph captures
    and earlier work in the same process leave such cycles): a worker that freed it would record a CUDA event
    for that stream, and die with a CUDA initialization error."""
    tensor = torch.ones(4, device="cuda")
    tensor.record_stream(torch.cuda.Stream())
    cycle = [tensor]
    cycle.append(cycle)
    del tensor, cycle
    code, _, err = cli(
        [
            "train",
            tiny_run.cube,
            "-o",
            tmp_path / "run",
            "--embed-dim",
            "8",
            "--depths",
            "1",
            "--batch-size",
            "8",
            "--device",
            "cuda",
            "--epochs",
            "1",
            "--workers",
            "1",
        ]
    )
    assert code == 0, err
