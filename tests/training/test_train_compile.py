"""`vmrnn train --compile`: trains as eager does, saves plain weight names, resumes with or without it.

Inductor's C++ code generation takes minutes on a small CPU, so the training tests give torch.compile the
"aot_eager" backend: dynamo still captures the forward (graph breaks and all) and AOTAutograd still builds the
backward, only the code generation is left out. One slow test runs the default backend on the tiniest model.
"""

import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch

from models import build_model
from vmrnn_cli.training.checkpoint import Checkpoint, build_network, load_checkpoint
from vmrnn_cli.training.loop import train
from vmrnn_cli.training.step_modes import compiled_forward

TINY = ["--embed-dim", "8", "--depths", "1", "--batch-size", "8", "--device", "cpu", "--seed", "0", "--epochs", "1"]
GIVEN = {"embed_dim": 8, "depths": [1], "batch_size": 8, "device": "cpu", "epochs": 2, "seed": 3}


CAPTURED: list[torch.fx.GraphModule] = []  # every graph dynamo captured for the training tests


def aot_eager_recording(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable[..., Any]:
    """A torch.compile backend: note the graph, then run it through aot_eager (no code generation).

    One function for all tests, so that dynamo's cache (guarded on the backend) spares them a trace each."""
    CAPTURED.append(graph)
    return torch._dynamo.lookup_backend("aot_eager")(graph, example_inputs)


@pytest.fixture
def aot_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=aot_eager_recording))


def assert_same_model(a: Checkpoint, b: Checkpoint) -> None:
    """Same weight names and the same forecasts. Not the same weights to the last bit: a bias right before a
    per-channel GroupNorm gets a zero gradient, whose rounding noise AdamW turns into steps of the learning rate's
    size (the norm removes them again); compiled code rounds differently from eager."""
    assert a.model.keys() == b.model.keys()
    bands, size = len(a.spec.band_names), a.spec.window
    frames = torch.randn(4, 3, bands, size, size, generator=torch.Generator().manual_seed(0))
    forecasts = []
    for ckpt in (a, b):
        net = build_network(ckpt.config["model"], bands, size)
        net.load_state_dict(ckpt.model)  # strict: the uncompiled network's own names
        with torch.no_grad():
            forecasts.append(net.eval()(frames, 2))
    torch.testing.assert_close(forecasts[1], forecasts[0], rtol=1e-5, atol=1e-5)


def test_compile_trains_the_same_model_and_saves_plain_names(cli, tiny_run, tmp_path, aot_eager) -> None:
    run = tmp_path / "run"
    code, _, err = cli(["train", tiny_run.cube, "-o", run, *TINY, "--compile"])
    assert code == 0, err
    assert "torch.compile" in err
    assert CAPTURED  # dynamo traced the model
    last, plain = load_checkpoint(run / "last.pt"), load_checkpoint(tiny_run.run / "last.pt")
    assert last.config["train"]["compile"] is True and "compile = true\n" in (run / "config.toml").read_text()
    assert not [name for name in last.model if "_orig_mod" in name]
    assert_same_model(plain, last)
    [row] = last.state["progress"]["metrics"]
    [plain_row] = plain.state["progress"]["metrics"]
    assert row["train_loss"] == pytest.approx(plain_row["train_loss"], rel=1e-5)
    assert row["val_loss"] == pytest.approx(plain_row["val_loss"], rel=1e-5)


@pytest.mark.parametrize("first, then", [(True, "--no-compile"), (False, "--compile")])
def test_resume_switches_compile_and_equals_an_uninterrupted_plain_run(
    cli, tiny_run, tmp_path, interrupted_train, capsys, aot_eager, first: bool, then: str
) -> None:
    train(tiny_run.cube, tmp_path / "straight", given=GIVEN)
    interrupted_train(tiny_run.cube, tmp_path / "resumed", {**GIVEN, "compile": first})
    capsys.readouterr()  # the log of the runs so far
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "resumed", "--resume", then])
    assert code == 0, err
    assert ("torch.compile" in err) is (then == "--compile")
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert resumed.config["train"]["compile"] is (then == "--compile")
    assert_same_model(straight, resumed)
    for a, b in zip(straight.state["progress"]["metrics"], resumed.state["progress"]["metrics"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


@pytest.mark.slow
def test_compiled_forward_with_the_default_backend_matches_eager_and_compiles_once() -> None:
    """Inductor on the CPU (C++ through gcc) on the tiniest model: one 4 x 4 frame (one token) in, one out, and the
    reference scan, which dynamo captures whole (the torch scan's graph breaks would double the compile time)."""
    torch.manual_seed(0)
    model = build_model(
        "vmrnn-b", in_channels=1, img_size=(4, 4), patch_size=4, embed_dim=8, depths=1, scan_backend="reference"
    )
    frames = torch.randn(2, 1, 1, 4, 4)
    stats = torch._dynamo.utils.counters["stats"]
    before = stats["unique_graphs"]
    forward = compiled_forward(model, tuple(frames.shape), horizon=1)
    results = []
    for run in (forward, model):
        model.zero_grad(set_to_none=True)
        out = run(frames, 1)
        out.square().mean().backward()
        results.append([out.detach(), *(p.grad for p in model.parameters() if p.requires_grad)])
    compiled_graphs = stats["unique_graphs"]
    assert compiled_graphs > before
    for compiled, eager in zip(*results, strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    forward(frames[:1], 1)  # a partial batch runs eager: no second compile
    assert stats["unique_graphs"] == compiled_graphs
