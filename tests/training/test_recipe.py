"""The training recipe: which parameters get weight decay, drop path on in training and off in evaluation, the
recipe's options through the TOML config, the CLI and the checkpoint, the schedule's end, the sigmoid head's data."""

import copy
import math
import re
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from rasterio.crs import CRS

from models.layers import DropPath
from vmrnn_cli import synthetic
from vmrnn_cli.data.cube import CubeSpec, open_cube
from vmrnn_cli.data.prepare import prepare
from vmrnn_cli.errors import OptionError, VmrnnError
from vmrnn_cli.options import PrepareOptions, TrainConfig, resolve_config, to_toml
from vmrnn_cli.training.checkpoint import Checkpoint, build_network, load_checkpoint, save_checkpoint
from vmrnn_cli.training.loop import train
from vmrnn_cli.training.recipe import (
    decay_split,
    fit_cube_to_head,
    learning_rate,
    make_optimizer,
    optimizer_state,
)

TINY_D = {"arch": "vmrnn-d", "embed_dim": 8, "depths": [1, 1], "patch_size": 2}
TINY_B = {"arch": "vmrnn-b", "embed_dim": 8, "depths": [2], "patch_size": 4}  # patch 4: a GroupNorm in the head
# Written out by name, independently of the module types recipe.decay_split looks at: a bias, a LayerNorm
# ("norm", "out_norm"), the GroupNorm inside VMRNN-B's patch-4 head, or an SSM parameter.
NO_DECAY = re.compile(
    r"(\.bias|(^|\.)(norm|out_norm)\.weight|^inflate\.hidden\.1\.weight|\.A_logs|\.Ds|\.dt_projs_bias)$"
)


def tiny_net(model: dict, **recipe) -> torch.nn.Module:
    config = resolve_config(None, {**model, **recipe})
    torch.manual_seed(0)
    return build_network(config.model_config(), 1, 16)


@pytest.mark.parametrize("model", [TINY_D, TINY_B], ids=["vmrnn-d", "vmrnn-b"])
def test_weight_decay_on_weights_only(model: dict) -> None:
    net = tiny_net(model)
    decay, no_decay = decay_split(net)
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    assert [n for n, _ in no_decay] == [n for n in trainable if NO_DECAY.search(n)]
    assert [n for n, _ in decay] == [n for n in trainable if not NO_DECAY.search(n)]
    decayed = {n for n, _ in decay}
    for must in ("patch_embed.proj.weight", "inflate.out.weight"):
        assert must in decayed
    for suffix in ("in_proj.weight", "conv2d.weight", "x_proj_weight", "dt_projs_weight", "out_proj.weight"):
        assert any(n.endswith(f"ss2d.{suffix}") for n in decayed), suffix
    for suffix in ("ss2d.A_logs", "ss2d.Ds", "ss2d.dt_projs_bias", "ss2d.out_norm.weight", "blocks.0.norm.weight"):
        assert any(n.endswith(suffix) for n, _ in no_decay), suffix
    # frozen parameters (the linear layer of blocks that never see h, VMRNN-D's unused embedding) in neither group
    frozen = {name for name, p in net.named_parameters() if not p.requires_grad}
    assert frozen and not frozen & (decayed | {n for n, _ in no_decay})


@pytest.mark.parametrize("weight_decay", [0.1, 0.0])
def test_optimizer_decays_only_the_first_group(weight_decay: float) -> None:
    net = tiny_net(TINY_D)
    config = resolve_config(None, {**TINY_D, "lr": 0.01, "weight_decay": weight_decay})
    optimizer = make_optimizer(net, config)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [weight_decay, 0.0]
    assert all(g["lr"] == 0.01 for g in optimizer.param_groups)
    decay, no_decay = decay_split(net)
    assert [id(p) for p in optimizer.param_groups[0]["params"]] == [id(p) for _, p in decay]
    assert [id(p) for p in optimizer.param_groups[1]["params"]] == [id(p) for _, p in no_decay]
    # with zero gradients Adam's update is 0, so a step changes only what decays: by the factor 1 - lr * decay
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    optimizer.step()
    for name, p in decay:
        torch.testing.assert_close(p.detach(), before[name] * (1 - 0.01 * weight_decay), rtol=0, atol=1e-7)
    for name, p in no_decay:
        assert torch.equal(p.detach(), before[name]), name


def test_a_bare_learning_rate_keeps_the_default_decay() -> None:
    optimizer = make_optimizer(tiny_net(TINY_D), 0.002)
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(0.002, 0.05), (0.002, 0.0)]


def test_a_one_group_optimizer_state_resumes_exactly() -> None:
    """Checkpoints from before the groups: AdamW over net.parameters() in one group, decay on all."""
    net = tiny_net(TINY_D)
    twin = tiny_net(TINY_D)
    params = [p for p in net.parameters() if p.requires_grad]
    old = torch.optim.AdamW(params, lr=0.01, weight_decay=0.05)
    torch.manual_seed(1)
    grads = [[torch.randn_like(p) for p in params] for _ in range(3)]
    for p, g in zip(params, grads[0]):
        p.grad = g.clone()
    old.step()
    twin.load_state_dict(net.state_dict())
    new = make_optimizer(twin, 0.01)
    saved = copy.deepcopy(old.state_dict())  # as from a file: load_state_dict would share the tensors with `old`
    new.load_state_dict(optimizer_state(saved, twin, new))
    assert [g["weight_decay"] for g in new.param_groups] == [0.05, 0.05]  # as the run trained
    twin_params = [p for p in twin.parameters() if p.requires_grad]
    for step_grads in grads[1:]:
        for p, q, g in zip(params, twin_params, step_grads):
            p.grad, q.grad = g.clone(), g.clone()
        old.step()
        new.step()
    for p, q in zip(params, twin_params):
        assert torch.equal(p, q)
    current = make_optimizer(twin, 0.01).state_dict()
    assert optimizer_state(current, twin, new) is current  # a two-group state passes through


def test_drop_path_random_in_training_only() -> None:
    frames = torch.rand(2, 3, 1, 16, 16)
    net = tiny_net(TINY_D, drop_path=0.5)
    rates = [m.p for m in net.modules() if isinstance(m, DropPath)]
    assert max(rates) == 0.5 and min(rates) == 0.0  # 0 up to 0.5 over each path's blocks
    with torch.no_grad():
        net.train()
        torch.manual_seed(0)
        outs = [net(frames, 2) for _ in range(4)]
        assert any(not torch.equal(outs[0], other) for other in outs[1:])
        net.eval()
        assert torch.equal(net(frames, 2), net(frames, 2))
        plain = tiny_net(TINY_D)
        plain.train()
        assert torch.equal(plain(frames, 2), plain(frames, 2))  # without drop path, training mode is deterministic


def test_recipe_options_validated() -> None:
    for given, option in [
        ({"drop_path": 1.0}, "drop_path"),
        ({"drop_path": -0.1}, "drop_path"),
        ({"drop_path": True}, "drop_path"),
        ({"weight_decay": -1e-3}, "weight_decay"),
        ({"weight_decay": math.nan}, "weight_decay"),
        ({"weight_decay": "0.1"}, "weight_decay"),
        ({"output_activation": "relu"}, "output_activation"),
    ]:
        with pytest.raises(OptionError) as err:
            resolve_config(None, given)
        assert err.value.option == option
    config = resolve_config(None, {"drop_path": 0, "weight_decay": 0})
    assert (config.drop_path, config.weight_decay) == (0.0, 0.0)
    assert isinstance(config.drop_path, float) and isinstance(config.weight_decay, float)


def test_defaults_are_todays_recipe() -> None:
    config = TrainConfig().validate()
    assert (config.weight_decay, config.drop_path, config.output_activation) == (0.05, 0.0, "identity")
    assert "drop_path" not in config.model_config()  # the model config a run without drop path always stored


def test_bad_value_in_the_config_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("drop_path = 1.5\n")
    with pytest.raises(VmrnnError, match=r"run\.toml: drop_path must be a number in \[0, 1\)"):
        resolve_config(path, {})


def test_options_round_trip_through_toml_and_checkpoint(tmp_path: Path) -> None:
    given = {**TINY_D, "weight_decay": 0.125, "drop_path": 0.25, "output_activation": "sigmoid"}
    (tmp_path / "run.toml").write_text('weight_decay = 0.125\ndrop_path = 0.25\noutput_activation = "sigmoid"\n')
    from_file = resolve_config(tmp_path / "run.toml", TINY_D)
    config = resolve_config(None, given)
    assert from_file == config
    (tmp_path / "config.toml").write_text(to_toml(config))
    assert resolve_config(tmp_path / "config.toml", {}) == config
    model = config.model_config()
    assert (model["drop_path"], model["output_activation"]) == (0.25, "sigmoid")
    net = build_network(model, 1, 16)
    spec = CubeSpec.from_json(
        {
            "crs_wkt": CRS.from_epsg(32633).to_wkt(),
            "transform": [30.0, 0.0, 5e5, 0.0, -30.0, 5e6],
            "shape": [16, 16],
            "band_names": ["band1"],
            "nodata": None,
            "time_step_seconds": 60.0,
            "calendar": "proleptic_gregorian",
            "input_frames": 3,
            "output_frames": 2,
            "patch_size": 16,
        }
    )
    ckpt = Checkpoint(net.state_dict(), {"train": asdict(config), "model": model}, np.zeros(1), np.ones(1), spec)
    save_checkpoint(ckpt, tmp_path / "last.pt")
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert TrainConfig(**loaded.config["train"]) == config
    rebuilt = loaded.build_model()
    assert isinstance(rebuilt.activation, torch.nn.Sigmoid)
    assert max(m.p for m in rebuilt.modules() if isinstance(m, DropPath)) == 0.25


def test_cli_flags_reach_the_run_config(cli, monkeypatch, tmp_path) -> None:
    seen = {}

    def fake_train(cube, output, config_file=None, given=None, resume=False, overwrite=False):
        seen.update(given)
        return []

    monkeypatch.setattr("vmrnn_cli.training.loop.train", fake_train)
    recipe = ["--weight-decay", "0", "--drop-path", "0.1", "--output-activation", "sigmoid"]
    code, _, err = cli(["train", tmp_path / "c.zarr", "-o", tmp_path / "run", *recipe])
    assert code == 0, err
    assert seen == {"weight_decay": 0.0, "drop_path": 0.1, "output_activation": "sigmoid"}


def test_cli_refuses_a_drop_path_of_one(cli, tmp_path) -> None:
    code, out, err = cli(["train", tmp_path / "c.zarr", "-o", tmp_path / "run", "--drop-path", "1"])
    assert code == 2 and out == ""
    assert "--drop-path" in err and "[0, 1)" in err


def test_trained_run_records_the_recipe(tiny_run, tmp_path) -> None:
    given = {"embed_dim": 8, "depths": [1], "batch_size": 8, "device": "cpu", "epochs": 1}
    run = tmp_path / "run"
    train(tiny_run.cube, run, given={**given, "weight_decay": 0.125, "drop_path": 0.25})
    last = load_checkpoint(run / "last.pt")
    config = TrainConfig(**last.config["train"])
    assert (config.weight_decay, config.drop_path) == (0.125, 0.25)
    assert last.config["model"]["drop_path"] == 0.25
    assert resolve_config(run / "config.toml", {}) == config
    net = last.build_model()
    assert [m.p for m in net.modules() if isinstance(m, DropPath)] == [0.25]


def test_trained_run_uses_the_weight_decay(tiny_run, tmp_path) -> None:
    given = {"embed_dim": 8, "depths": [1], "batch_size": 8, "device": "cpu", "epochs": 1, "weight_decay": 0.125}
    train(tiny_run.cube, tmp_path / "run", given=given)
    groups = load_checkpoint(tmp_path / "run" / "last.pt").state["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.125, 0.0]


def test_learning_rate_ends_at_zero() -> None:
    assert learning_rate(99, 100, 1e-3) > 0
    assert learning_rate(100, 100, 1e-3) == 0.0
    assert learning_rate(150, 100, 1e-3) == 0.0  # past the end: 0, not a rising cosine


def test_sigmoid_head_trains_on_the_cubes_own_values(tiny_run) -> None:
    cube = open_cube(tiny_run.cube)
    identity = resolve_config(None, {})
    sigmoid = resolve_config(None, {"output_activation": "sigmoid"})
    assert fit_cube_to_head(cube, identity) is cube
    low, high = float(cube.data.min()), float(cube.data.max())
    assert low < 0 or high > 1  # the synthetic series is not within [0, 1] ...
    with pytest.raises(OptionError, match=r"within \[0, 1\]") as err:
        fit_cube_to_head(cube, sigmoid)  # ... so sigmoid is refused
    assert err.value.option == "output_activation"
    unit = replace(cube, data=(cube.data - low) / (high - low))  # NaN holes kept
    fitted = fit_cube_to_head(unit, sigmoid)
    assert np.array_equal(fitted.mean, np.zeros_like(cube.mean)) and np.array_equal(fitted.std, np.ones_like(cube.std))
    assert fitted.data is unit.data and not np.array_equal(cube.mean, fitted.mean)
    with pytest.raises(OptionError):
        fit_cube_to_head(replace(cube, data=unit.data + 1e-3), sigmoid)  # just above 1


def test_sigmoid_run_on_unit_data_end_to_end(tmp_path) -> None:
    tifs = synthetic.make_geotiff_series(tmp_path / "tifs", n_frames=15, height=16, width=16, n_blobs=0)
    cube = tmp_path / "cube.zarr"
    prepare(
        [str(p) for p in tifs], cube, PrepareOptions(input_frames=3, output_frames=2, window=16, split=(0.6, 0.4, 0.0))
    )
    assert float(open_cube(cube).data.min()) >= 0 and float(open_cube(cube).data.max()) <= 1
    given = {"embed_dim": 8, "depths": [1], "batch_size": 4, "device": "cpu", "epochs": 1}
    train(cube, tmp_path / "run", given={**given, "output_activation": "sigmoid"})
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last.config["model"]["output_activation"] == "sigmoid"
    assert (last.mean.tolist(), last.std.tolist()) == ([0.0], [1.0])  # predict and evaluate read physical values
    assert isinstance(last.build_model().activation, torch.nn.Sigmoid)


def test_sigmoid_refused_on_data_outside_the_unit_range(cli, tiny_run, tmp_path) -> None:
    code, out, err = cli(["train", tiny_run.cube, "-o", tmp_path / "run", "--output-activation", "sigmoid",
                          "--embed-dim", "8", "--depths", "1", "--device", "cpu"])  # fmt: skip
    assert code == 2 and out == ""
    assert "--output-activation" in err and "within [0, 1]" in err
    assert not (tmp_path / "run" / "last.pt").exists()
