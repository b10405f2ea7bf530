"""`vmrnn train` turns on activation checkpointing by itself where a training step does not fit in GPU memory.

There is no GPU here: a network whose training forward, with checkpointing off, builds a graph whose backward raises
torch.OutOfMemoryError (after the parameters' gradients are in and a random number was drawn, so that the retry must
undo both) stands in for a step too large for the card. The switch must leave the run bit for bit what it is with
`grad_checkpoint` given from the start; `no_grad_checkpoint` refuses it in one error line.
"""

import pytest
import torch

import vmrnn_cli.training.loop as loop_module
from models.vmrnn import _Forecaster
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.options import TrainConfig, resolve_config
from vmrnn_cli.training.checkpoint import load_checkpoint
from vmrnn_cli.training.loop import train
from vmrnn_cli.training.step_modes import TURNED_ON, fit_in_memory

TINY = ["--embed-dim", "8", "--depths", "1", "--batch-size", "8", "--device", "cpu", "--seed", "0", "--epochs", "1"]
GIVEN = {"embed_dim": 8, "depths": [1], "batch_size": 8, "device": "cpu", "epochs": 2, "seed": 3}
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"


@pytest.fixture
def small_card(monkeypatch) -> list[bool]:
    """Training steps without checkpointing run out of memory in backward; the list records each training forward's
    checkpointing (True: checkpointed)."""
    forwards = []
    real = _Forecaster.forward

    def forward(self, frames, horizon):
        if not (self.training and torch.is_grad_enabled()):
            return real(self, frames, horizon)
        forwards.append(self.checkpoint_steps)
        if self.checkpoint_steps:
            return real(self, frames, horizon)
        torch.rand(3)  # a step may draw random numbers before it fails
        frames = frames.detach().requires_grad_()  # its gradient comes last, after the parameters'

        def out_of_memory(_grad):
            raise torch.OutOfMemoryError(OOM)

        frames.register_hook(out_of_memory)
        return real(self, frames, horizon)

    monkeypatch.setattr(_Forecaster, "forward", forward)
    return forwards


def lines_with(err: str, text: str) -> list[str]:
    return [line for line in err.splitlines() if text in line]


def assert_same_run(a, b) -> None:
    """Bit for bit: weights, optimizer state, RNG state, progress and metrics (less their timings), config."""
    assert a.model.keys() == b.model.keys()
    for name, tensor in a.model.items():
        assert torch.equal(tensor, b.model[name]), name
    optimizer_a, optimizer_b = a.state["optimizer"]["state"], b.state["optimizer"]["state"]
    assert optimizer_a.keys() == optimizer_b.keys()
    for key, values in optimizer_a.items():
        for name, value in values.items():
            assert torch.equal(value, optimizer_b[key][name]), (key, name)
    assert torch.equal(a.state["rng_cpu"], b.state["rng_cpu"])
    progress_a, progress_b = (
        {**x.state["progress"], "metrics": untimed(x.state["progress"]["metrics"])} for x in (a, b)
    )
    assert progress_a == progress_b
    assert a.config == b.config


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("samples_per_s", "seconds")} for row in rows]


def test_a_step_that_does_not_fit_turns_checkpointing_on_and_trains_as_if_given(
    cli, tiny_run, tmp_path, small_card
) -> None:
    """With stochastic depth on, so that the steps draw random numbers as the real ones do."""
    options = [*TINY, "--drop-path", "0.2"]
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "given", *options, "--grad-checkpoint"])
    assert code == 0 and lines_with(err, "does not fit") == [], err
    assert small_card and all(small_card)
    small_card.clear()
    code, out, err = cli(["train", tiny_run.cube, "-o", tmp_path / "auto", *options])
    assert code == 0, err
    assert lines_with(err, "does not fit") == [TURNED_ON]
    assert TURNED_ON == "the training step does not fit in GPU memory; turning on --grad-checkpoint"
    assert small_card[:2] == [False, True] and all(small_card[1:])  # one failed attempt, then checkpointed
    assert out.split() == [
        str(tmp_path / "auto" / name) for name in ("best.pt", "last.pt", "metrics.csv", "config.toml")
    ]
    given, auto = (load_checkpoint(tmp_path / name / "last.pt") for name in ("given", "auto"))
    assert auto.config["train"]["grad_checkpoint"] is True  # the decision is recorded, so --resume keeps it
    assert_same_run(given, auto)
    best_given, best_auto = (load_checkpoint(tmp_path / name / "best.pt") for name in ("given", "auto"))
    assert best_auto.config == best_given.config
    toml = (tmp_path / "auto" / "config.toml").read_text()
    assert toml == (tmp_path / "given" / "config.toml").read_text() and "grad_checkpoint = true\n" in toml
    assert resolve_config(tmp_path / "auto" / "config.toml", {}) == TrainConfig(**auto.config["train"])


def test_no_grad_checkpoint_refuses_the_switch_in_one_line(cli, tiny_run, tmp_path, small_card) -> None:
    code, out, err = cli(["train", tiny_run.cube, "-o", tmp_path / "run", *TINY, "--no-grad-checkpoint"])
    lines = err.strip().splitlines()  # the run's start line, then the error
    assert code == 1 and out == "" and len(lines) == 2 and lines[0].startswith("training "), err
    assert lines[1] == (
        "vmrnn: error: the training step does not fit in GPU memory with --no-grad-checkpoint (OutOfMemoryError: "
        f"{OOM}); drop it to let vmrnn turn on activation checkpointing (same maths, one extra forward pass), or "
        "lower --batch-size"
    )
    assert small_card == [False]  # no second attempt
    assert not (tmp_path / "run" / "last.pt").exists()


def test_resume_keeps_the_switch_and_equals_an_uninterrupted_run(
    cli, tiny_run, tmp_path, small_card, interrupted_train, capsys
) -> None:
    """The switch at the first step, an interrupt in epoch 2, --resume: checkpointed from the start, with no second
    switch, and the same run as one given `grad_checkpoint` and never interrupted."""
    train(tiny_run.cube, tmp_path / "straight", given={**GIVEN, "grad_checkpoint": True})
    small_card.clear()
    interrupted_train(tiny_run.cube, tmp_path / "resumed", GIVEN)
    assert small_card[:2] == [False, True] and lines_with(capsys.readouterr().err, "does not fit") == [TURNED_ON]
    small_card.clear()
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "resumed", "--resume"])
    assert code == 0 and lines_with(err, "does not fit") == [], err
    assert "per-frame activation checkpointing" in err and small_card and all(small_card)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert_same_run(straight, resumed)


def test_a_capture_that_does_not_fit_turns_checkpointing_on_before_the_run_starts(
    cli, tiny_run, tmp_path, monkeypatch
) -> None:
    """The CUDA-graph capture runs the first forwards and backwards: out of memory there (with checkpointing off)
    switches before the run directory is written. A capture that works is an identity here (no GPU)."""
    captures = []

    def capture(module, sample_args):
        captures.append(module.model.checkpoint_steps)
        if not module.model.checkpoint_steps:
            raise torch.OutOfMemoryError(OOM)
        return module

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", capture)
    monkeypatch.setattr(loop_module, "use_cuda_graphs", lambda config, device, world: config.cuda_graphs is not False)
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "given", *TINY, "--grad-checkpoint"])
    assert code == 0 and captures == [True], err
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "auto", *TINY])
    assert code == 0 and captures == [True, False, True], err
    assert lines_with(err, "does not fit") == [TURNED_ON]
    started = next(line for line in err.splitlines() if line.startswith("training "))
    assert "per-frame activation checkpointing, CUDA graphs" in started
    given, auto = (load_checkpoint(tmp_path / name / "last.pt") for name in ("given", "auto"))
    assert_same_run(given, auto)
    assert "grad_checkpoint = true\n" in (tmp_path / "auto" / "config.toml").read_text()
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "refused", *TINY, "--no-grad-checkpoint"])
    assert code == 1 and len(err.strip().splitlines()) == 1 and "with --no-grad-checkpoint" in err, err
    assert not (tmp_path / "refused").exists()  # refused before the run directory is made


def test_fit_in_memory_undoes_the_failed_attempt_and_reports_a_batch_too_large() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    net.checkpoint_steps = False
    attempts, said = [], []

    def attempt() -> float:
        attempts.append(net.checkpoint_steps)
        net(torch.randn(4, 3)).sum().backward()
        if not net.checkpoint_steps:
            raise torch.OutOfMemoryError(OOM)
        return float(torch.rand(()))

    rng = torch.get_rng_state()
    value = fit_in_memory(attempt, net, None, said.append)
    assert attempts == [False, True] and said == [TURNED_ON] and net.checkpoint_steps
    torch.set_rng_state(rng)
    torch.randn(4, 3)
    assert value == float(torch.rand(()))  # the retry drew what the first attempt drew

    def too_large() -> None:
        raise torch.OutOfMemoryError(OOM)

    with pytest.raises(VmrnnError, match=r"even with per-frame activation checkpointing .*; lower `batch_size`$"):
        fit_in_memory(too_large, net, None, said.append)
    assert all(p.grad is None for p in net.parameters())
    net.checkpoint_steps = False
    with pytest.raises(VmrnnError, match="with `no_grad_checkpoint`"):
        fit_in_memory(too_large, net, False, said.append)
    assert said == [TURNED_ON] and not net.checkpoint_steps
