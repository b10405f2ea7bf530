"""Run config: defaults < TOML file < command-line options; bad files and values are clear errors."""

from pathlib import Path

import pytest

from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.options import TrainConfig, read_toml, resolve_config, to_toml


def test_defaults_follow_the_architecture() -> None:
    assert resolve_config(None, {}).depths == [12] and resolve_config(None, {}).patch_size == 4
    d = resolve_config(None, {"arch": "vmrnn-d"})
    assert d.depths == [2, 2] and d.patch_size == 2
    assert d.model_config() == {
        "arch": "vmrnn-d",
        "patch_size": 2,
        "embed_dim": 128,
        "depths": [2, 2],
        "output_activation": "identity",
    }


def test_toml_then_options(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('arch = "vmrnn-b"\nepochs = 7\nlr = 0.0005\ndepths = 3\nbatch_size = 2\n')
    config = resolve_config(path, {"epochs": 9})
    assert (config.epochs, config.lr, config.depths, config.batch_size) == (9, 0.0005, [3], 2)
    assert config.model_config()["depths"] == 3


def test_written_config_reads_back(tmp_path: Path) -> None:
    config = resolve_config(None, {"arch": "vmrnn-d", "depths": [1, 1], "embed_dim": 32})
    (tmp_path / "config.toml").write_text(to_toml(config))
    assert resolve_config(tmp_path / "config.toml", {}) == config


@pytest.mark.parametrize(
    "text, match",
    [
        ("epochs = 0\n", "epochs must be a positive integer"),
        ('arch = "unet"\n', "arch must be one of"),
        ("depths = [2, 2]\n", "must be one depth for vmrnn-b"),
        ("lr = -1\n", "lr must be a positive number"),
        ("learning_rate = 0.1\n", "unknown key"),
        ("epochs = \n", "not a readable TOML file"),
    ],
)
def test_bad_config_file_names_the_file(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(VmrnnError, match=match) as err:
        resolve_config(path, {})
    assert str(err.value).startswith(str(path))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(VmrnnError, match="no such config file"):
        read_toml(tmp_path / "nope.toml")
    assert TrainConfig().validate().arch == "vmrnn-b"
