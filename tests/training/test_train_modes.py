"""`vmrnn train --grad-checkpoint / --cuda-graphs`: same weights, config round trip, resume, refusals, dispatch.

The CUDA-graph capture itself runs in tests/test_gpu.py; here the dispatch and wiring around it, and the fallback
where the capture fails, run on the CPU with plain callables in place of the graphed one. `--compile` trains in
tests/test_train_compile.py; its refusal and resume switch are here with the others'.
"""

import shutil

import pytest
import torch

import vmrnn_cli.training.loop as train_module
from models import build_model
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.options import TrainConfig, resolve_config
from vmrnn_cli.training.checkpoint import load_checkpoint
from vmrnn_cli.training.loop import train
from vmrnn_cli.training.step_modes import FixedHorizon, dispatch_to_graph, graphed_forward, use_cuda_graphs

# the tiny_run fixture's model and training options, as command-line options
TINY = ["--embed-dim", "8", "--depths", "1", "--batch-size", "8", "--device", "cpu", "--seed", "0", "--epochs", "1"]
GIVEN = {"embed_dim": 8, "depths": [1], "batch_size": 8, "device": "cpu", "epochs": 2, "seed": 3}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_grad_checkpoint_trains_the_same_weights_and_round_trips(cli, tiny_run, tmp_path) -> None:
    run = tmp_path / "run"
    code, _, err = cli(["train", tiny_run.cube, "-o", run, *TINY, "--grad-checkpoint"])
    assert code == 0, err
    assert "per-frame activation checkpointing" in err and "CUDA graphs" not in err
    last = load_checkpoint(run / "last.pt")
    assert last.config["train"]["grad_checkpoint"] is True and last.config["train"]["cuda_graphs"] is None
    assert_same_weights(load_checkpoint(tiny_run.run / "last.pt").model, last.model)
    text = (run / "config.toml").read_text()
    assert "grad_checkpoint = true\n" in text and "cuda_graphs" not in text  # unset: decided where it runs
    assert resolve_config(run / "config.toml", {}) == TrainConfig(**last.config["train"])


def test_resume_keeps_grad_checkpoint_and_equals_an_uninterrupted_plain_run(
    cli, tiny_run, tmp_path, interrupted_train
) -> None:
    """Also checks that the epoch's loss sums, kept on the device between checkpoints, survive an interrupt."""
    train(tiny_run.cube, tmp_path / "straight", given=GIVEN)
    interrupted_train(tiny_run.cube, tmp_path / "resumed", {**GIVEN, "grad_checkpoint": True})
    progress = load_checkpoint(tmp_path / "resumed" / "last.pt").state["progress"]
    assert (progress["epoch"], progress["batch"]) == (1, 1) and progress["count"] > 0
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "resumed", "--resume"])
    assert code == 0, err
    assert "per-frame activation checkpointing" in err
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert resumed.config["train"]["grad_checkpoint"] is True
    assert_same_weights(straight.model, resumed.model)
    for a, b in zip(straight.state["progress"]["metrics"], resumed.state["progress"]["metrics"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_resume_may_switch_the_step_modes(cli, tiny_run, tmp_path) -> None:
    """They change how a step runs, not what it computes; options that change the maths stay refused."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run, run)
    code, _, err = cli(
        ["train", tiny_run.cube, "-o", run, "--resume", "--grad-checkpoint", "--no-cuda-graphs", "--compile"]
    )
    assert code == 0 and "training already finished" in err, err
    code, _, err = cli(["train", tiny_run.cube, "-o", run, "--resume", "--lr", "0.5"])
    assert code == 1 and "--lr 0.5 differs" in err


def one_line_error(code: int, err: str, option: str = "--cuda-graphs", exit_code: int = 1) -> str:
    lines = err.strip().splitlines()
    assert code == exit_code and len(lines) == 1 and lines[0].startswith(f"vmrnn: error: {option}: "), err
    return lines[0]


def test_cuda_graphs_refused_on_cpu(cli, tiny_run, tmp_path) -> None:
    code, out, err = cli(["train", tiny_run.cube, "-o", tmp_path / "run", *TINY, "--cuda-graphs"])
    assert "CUDA GPU" in one_line_error(code, err) and out == ""
    assert not (tmp_path / "run").exists()


def test_cuda_graphs_refused_under_torchrun(cli, tiny_run, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets; refused before any process group starts
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "run", *TINY, "--cuda-graphs"])
    assert "torchrun with 2 processes" in one_line_error(code, err)
    assert not (tmp_path / "run").exists()


def test_compile_refused_with_cuda_graphs(cli, tiny_run, tmp_path) -> None:
    code, out, err = cli(["train", tiny_run.cube, "-o", tmp_path / "run", *TINY, "--compile", "--cuda-graphs"])
    assert "--cuda-graphs" in one_line_error(code, err, "--compile", exit_code=2) and out == ""  # a usage error
    assert not (tmp_path / "run").exists()


CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize(
    "options, device, world, expected",
    [
        ({}, CUDA, 1, True),  # the default: on where graphs can run
        ({}, CPU, 1, False),
        ({}, CUDA, 2, False),
        ({"compile": True}, CUDA, 1, False),
        ({"cuda_graphs": False}, CUDA, 1, False),
        ({"cuda_graphs": True}, CUDA, 1, True),
    ],
)
def test_cuda_graphs_default_on_where_they_can_run(options, device, world, expected) -> None:
    assert use_cuda_graphs(TrainConfig(**options), device, world) is expected


@pytest.mark.parametrize("text", ["grad_checkpoint = 1\n", 'cuda_graphs = "yes"\n', "compile = 0\n"])
def test_step_modes_must_be_booleans(tmp_path, text: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(VmrnnError, match="must be true or false") as err:
        resolve_config(path, {})
    assert str(err.value).startswith(str(path))


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("vmrnn-b", in_channels=2, img_size=(16, 16), patch_size=4, embed_dim=8, depths=1)


def test_fixed_horizon_is_the_model_at_one_horizon_without_autocast_cache() -> None:
    model = tiny_model()
    seen = []

    def probe(_module, _args):
        seen.append(torch.is_autocast_cache_enabled())

    model.register_forward_pre_hook(probe)
    frames = torch.randn(2, 3, 2, 16, 16)
    out = FixedHorizon(model, 2, bf16=False)(frames)
    torch.testing.assert_close(out, model(frames, 2), rtol=0, atol=0)
    assert seen == [False, True]  # cache off inside the wrapper (graphed region), back on outside
    assert list(FixedHorizon(model, 2, bf16=False).parameters()) == list(model.parameters())


def test_dispatch_sends_full_batches_to_the_graph_and_others_to_the_eager_model() -> None:
    model = tiny_model()
    fixed = FixedHorizon(model, 2, bf16=False)
    routed = []

    def graphed(frames: torch.Tensor) -> torch.Tensor:
        routed.append(("graph", frames.shape[0]))
        return fixed(frames)

    def eager(frames: torch.Tensor, horizon: int) -> torch.Tensor:
        routed.append(("eager", frames.shape[0]))
        return model(frames, horizon)

    forward = dispatch_to_graph(graphed, eager, (4, 3, 2, 16, 16), horizon=2)
    full, partial = torch.randn(4, 3, 2, 16, 16), torch.randn(3, 3, 2, 16, 16)
    for frames, horizon in ((full, 2), (partial, 2), (full, 3), (full, 2)):
        out = forward(frames, horizon)
        assert out.shape == (frames.shape[0], 2 + horizon, 2, 16, 16)
        torch.testing.assert_close(out, model(frames, horizon), rtol=0, atol=0)
    assert routed == [("graph", 4), ("eager", 3), ("eager", 4), ("graph", 4)]


def test_graphed_forward_captures_the_wrapped_model_on_a_full_sample_batch(monkeypatch) -> None:
    """The wiring around torch.cuda.make_graphed_callables, with an identity in its place (no GPU here)."""
    captured = []

    def fake_make_graphed_callables(module, sample_args):
        captured.append((module, sample_args))
        return module

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_make_graphed_callables)
    model = tiny_model()
    forward = graphed_forward(model, (4, 3, 2, 16, 16), 2, torch.device("cpu"), bf16=False)
    [(module, (sample,))] = captured
    assert isinstance(module, FixedHorizon) and module.model is model and module.horizon == 2
    assert sample.shape == (4, 3, 2, 16, 16) and sample.dtype == torch.float32 and not sample.requires_grad
    frames = torch.randn(4, 3, 2, 16, 16)
    loss = forward(frames, 2).square().mean()
    loss.backward()
    graph_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    model(frames, 2).square().mean().backward()
    for graph_grad, p in zip(graph_grads, (p for p in model.parameters() if p.requires_grad)):
        torch.testing.assert_close(graph_grad, p.grad, rtol=0, atol=0)


CAPTURE_ERROR = "CUDA error: operation not permitted when stream is capturing"
WARNING = f"warning: capturing the training step as CUDA graphs failed (RuntimeError: {CAPTURE_ERROR}); "


@pytest.fixture
def failing_capture(monkeypatch) -> list[int]:
    """Graphs taken on the CPU unless --no-cuda-graphs, and a capture that runs torch's warm-up (three forwards and
    torch.autograd.grad over the parameters, on the real model) and then fails; the list counts the captures."""
    captures = []

    def warm_up_then_fail(module, sample_args):
        captures.append(1)
        trained = tuple(p for p in module.parameters() if p.requires_grad)
        for _ in range(3):
            out = module(*sample_args)
            torch.autograd.grad(out, trained, torch.empty_like(out), only_inputs=True)
        raise RuntimeError(f"{CAPTURE_ERROR}\nCUDA kernel errors might be asynchronously reported")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", warm_up_then_fail)
    monkeypatch.setattr(train_module, "use_cuda_graphs", lambda config, device, world: config.cuda_graphs is not False)
    return captures


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_failed_default_capture_warns_once_and_trains_as_without_graphs(
    cli, tiny_run, tmp_path, failing_capture
) -> None:
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "eager", *TINY, "--no-cuda-graphs"])
    assert code == 0 and failing_capture == [] and warnings_in(err) == [], err
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "fallback", *TINY])
    assert code == 0 and failing_capture == [1], err
    [warning] = warnings_in(err)
    assert warning == WARNING + "training without them (--no-cuda-graphs skips the capture and this warning)"
    assert "captured" not in err and "CUDA graphs" not in err.replace(warning, "")
    eager, fallback = (load_checkpoint(tmp_path / name / "last.pt") for name in ("eager", "fallback"))
    assert_same_weights(eager.model, fallback.model)
    assert torch.equal(eager.state["rng_cpu"], fallback.state["rng_cpu"])
    assert eager.state["progress"]["metrics"][0]["train_loss"] == fallback.state["progress"]["metrics"][0]["train_loss"]
    # the run keeps the default (decided where it runs), not a False it was never given
    assert fallback.config["train"]["cuda_graphs"] is None
    assert "cuda_graphs" not in (tmp_path / "fallback" / "config.toml").read_text()


def test_failed_explicit_capture_is_one_error_line_and_leaves_no_run(cli, tiny_run, tmp_path, failing_capture) -> None:
    code, out, err = cli(["train", tiny_run.cube, "-o", tmp_path / "new", *TINY, "--cuda-graphs"])
    line = one_line_error(code, err)
    assert f"(RuntimeError: {CAPTURE_ERROR});" in line and "--no-cuda-graphs" in line and out == ""
    assert not (tmp_path / "new").exists()
    run = tmp_path / "old"
    shutil.copytree(tiny_run.run, run)
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    code, _, err = cli(["train", tiny_run.cube, "-o", run, *TINY, "--cuda-graphs", "--overwrite"])
    one_line_error(code, err)
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before  # --overwrite deleted nothing
    assert failing_capture == [1, 1]


def test_resume_after_a_failed_capture_falls_back_again_and_continues_exactly(
    cli, tiny_run, tmp_path, interrupted_train, failing_capture, capsys
) -> None:
    """The run keeps the default, so --resume tries the capture again (--no-cuda-graphs there would not)."""
    train(tiny_run.cube, tmp_path / "straight", given={**GIVEN, "cuda_graphs": False})
    interrupted_train(tiny_run.cube, tmp_path / "resumed", GIVEN)
    assert len(warnings_in(capsys.readouterr().err)) == 1 and failing_capture == [1]
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "resumed", "--resume"])
    assert code == 0 and len(warnings_in(err)) == 1 and failing_capture == [1, 1], err
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert resumed.config["train"]["cuda_graphs"] is None
    assert_same_weights(straight.model, resumed.model)
