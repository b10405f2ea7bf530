"""Checkpoints are data: written atomically, read with weights_only=True, anything else is one clear error."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from rasterio.crs import CRS

from vmrnn_cli.data.cube import CubeSpec
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.training.checkpoint import Checkpoint, build_network, load_checkpoint, save_checkpoint

MODEL = {"arch": "vmrnn-b", "patch_size": 4, "embed_dim": 8, "depths": 1, "output_activation": "identity"}
GEO = {
    "crs_wkt": CRS.from_epsg(32633).to_wkt(),
    "transform": [30.0, 0.0, 5e5, 0.0, -30.0, 5e6],
    "shape": [20, 24],
    "band_names": ["red", "nir"],
    "nodata": -9999.0,
    "time_step_seconds": 86400.0 * 16,
    "calendar": "proleptic_gregorian",
    "input_frames": 3,
    "output_frames": 2,
    "patch_size": 16,
    "freq": "16D",
}


def make_checkpoint(state: dict | None = None) -> Checkpoint:
    torch.manual_seed(0)
    net = build_network(MODEL, in_channels=2, window=16)
    return Checkpoint(
        net.state_dict(),
        {"model": MODEL, "train": {"epochs": 1}},
        np.array([0.5, 0.25]),
        np.array([2.0, 3.0]),
        CubeSpec.from_json(GEO),
        state or {},
    )


def test_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    ckpt = make_checkpoint({"progress": {"epoch": 1}, "rng_cpu": torch.get_rng_state()})
    save_checkpoint(ckpt, tmp_path / "last.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    torch.load(tmp_path / "last.pt", weights_only=True)  # plain data only
    loaded = load_checkpoint(tmp_path)  # a run directory without best.pt falls back to last.pt
    assert loaded.path == tmp_path / "last.pt"
    assert loaded.spec.to_json() == GEO and loaded.config["model"] == MODEL
    np.testing.assert_array_equal(loaded.mean, [0.5, 0.25])
    assert loaded.state["progress"] == {"epoch": 1}
    frames = torch.randn(1, 3, 2, 16, 16)
    original = build_network(MODEL, 2, 16)
    original.load_state_dict(ckpt.model)
    torch.testing.assert_close(loaded.build_model().eval()(frames, 2), original.eval()(frames, 2))


def test_a_spec_from_before_the_step_was_kept_still_loads() -> None:
    old = {k: v for k, v in GEO.items() if k != "freq"}
    assert CubeSpec.from_json(old).freq is None and CubeSpec.from_json(old).window == 16


def test_run_directory_prefers_best(tmp_path: Path) -> None:
    save_checkpoint(make_checkpoint(), tmp_path / "last.pt")
    save_checkpoint(make_checkpoint(), tmp_path / "best.pt")
    assert load_checkpoint(tmp_path).path == tmp_path / "best.pt"


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not a checkpoint at all", "torch.load cannot read it"),
        (b"", "torch.load cannot read it"),
        ("code", "objects other than tensors"),
        ("foreign", "no 'vmrnn-checkpoint' marker"),
    ],
)
def test_not_a_checkpoint_is_one_clear_line(tmp_path: Path, content, reason: str, capsys) -> None:
    path = tmp_path / "model.pt"
    if content == "code":
        torch.save({"format": "vmrnn-checkpoint", "evil": Payload()}, path)
    elif content == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(VmrnnError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a vmrnn checkpoint") and reason in message
    assert "\n" not in message
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"format": "vmrnn-checkpoint"}))
    with pytest.raises(VmrnnError, match="not a vmrnn checkpoint"):
        load_checkpoint(path)


def test_missing_and_empty_run_directory(tmp_path: Path) -> None:
    with pytest.raises(VmrnnError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(VmrnnError, match="no checkpoint in this run directory"):
        load_checkpoint(tmp_path)


def test_weights_of_another_model_are_a_clear_error(tmp_path: Path) -> None:
    ckpt = make_checkpoint()
    ckpt.config["model"] = {**MODEL, "embed_dim": 16}
    save_checkpoint(ckpt, tmp_path / "best.pt")
    with pytest.raises(VmrnnError, match=r"best.pt: checkpoint weights do not fit a vmrnn-b model"):
        load_checkpoint(tmp_path).build_model()
