"""How a training step runs, not what it computes: CUDA graphs (captured once, replayed) or torch.compile, and
activation checkpointing turned on where a step does not fit in GPU memory."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor, nn

from vmrnn_cli.errors import OptionError, VmrnnError

if TYPE_CHECKING:  # options imports pandas; the GPU benchmarks import this module with torch alone
    from vmrnn_cli.options import TrainConfig

T = TypeVar("T")
DOES_NOT_FIT = "the training step does not fit in GPU memory"
TURNED_ON = f"{DOES_NOT_FIT}; turning on --grad-checkpoint"


class FixedHorizon(nn.Module):
    """model(frames, horizon) with the horizon fixed, under bf16 autocast without its weight cache.

    The form torch.cuda.make_graphed_callables captures: tensor arguments only, and autocast's cache
    off inside the graphed region (it would keep graph-pool casts of the weights alive across replays).
    """

    def __init__(self, model: nn.Module, horizon: int, bf16: bool) -> None:
        super().__init__()
        self.model = model
        self.horizon = horizon
        self.bf16 = bf16

    def forward(self, frames: Tensor) -> Tensor:
        with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            return self.model(frames, self.horizon)


def dispatch_to_graph(
    graphed: Callable[[Tensor], Tensor], eager: Callable[[Tensor, int], Tensor], shape: tuple[int, ...], horizon: int
) -> Callable[[Tensor, int], Tensor]:
    """A model-like forward: inputs of the captured shape at the captured horizon run `graphed`, any other
    batch (an epoch's last, partial one) runs `eager`, since a CUDA graph replays fixed shapes only (and a
    compiled forward would compile again for the new shape)."""

    def forward(frames: Tensor, frames_out: int) -> Tensor:
        if tuple(frames.shape) == shape and frames_out == horizon:
            return graphed(frames)
        return eager(frames, frames_out)

    return forward


def graphed_forward(
    net: nn.Module, shape: tuple[int, ...], horizon: int, device: torch.device, bf16: bool
) -> Callable[[Tensor, int], Tensor]:
    """net's forward and backward for float32 inputs of `shape` captured once as CUDA graphs (bf16 autocast
    inside when `bf16`); other shapes run eager. The capture's warm-up leaves parameters and .grad alone."""
    sample = torch.zeros(shape, device=device)  # like the real inputs: float32, requires_grad=False
    graphed = torch.cuda.make_graphed_callables(FixedHorizon(net, horizon, bf16), (sample,))
    return dispatch_to_graph(graphed, net, shape, horizon)


def graphed_unless_failed(
    net: nn.Module,
    shape: tuple[int, ...],
    horizon: int,
    device: torch.device,
    explicit: bool,
    warn: Callable[[str], None],
) -> Callable[[Tensor, int], Tensor] | None:
    """graphed_forward(...); where the capture fails, an error if `cuda_graphs` asked for it, else one `warn` line
    and None: the default's graphs only speed up, and the failed warm-up changed no weight, .grad, buffer (the models
    have none) or RNG state, so eager training goes on as without graphs. Out of GPU memory with activation
    checkpointing off is raised as it is, for `fit_in_memory` to decide."""
    try:
        return graphed_forward(net, shape, horizon, device, bf16=True)  # as _forward_loss on CUDA
    except Exception as err:
        if isinstance(err, torch.OutOfMemoryError) and not net.checkpoint_steps:
            raise
        reason = _reason(err)
        if explicit:
            raise VmrnnError(
                f"`cuda_graphs`: capturing the training step as CUDA graphs failed ({reason}); "
                "pass `no_cuda_graphs` to train without them"
            ) from err
        warn(
            f"warning: capturing the training step as CUDA graphs failed ({reason}); training without them "
            "(--no-cuda-graphs skips the capture and this warning)"
        )
        return None


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {next(iter(str(err).strip().splitlines()), '')}"


def _rng_states() -> tuple[Tensor, list[Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _undo(net: nn.Module, rng: tuple[Tensor, list[Tensor] | None]) -> None:
    """Undo what a step that ran out of memory left: its parameter gradients, the random numbers it drew, the memory
    it held (graphed modules and autograd graphs sit in reference cycles)."""
    for p in net.parameters():
        p.grad = None
    torch.set_rng_state(rng[0])
    if rng[1] is not None:
        torch.cuda.set_rng_state_all(rng[1])
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def fit_in_memory(
    attempt: Callable[[], T], net: nn.Module, grad_checkpoint: bool | None, switched: Callable[[str], None]
) -> T:
    """attempt(): a training step's forward and backward, or the CUDA-graph capture that runs them, on `net`.

    Where it runs out of GPU memory with net's activation checkpointing off and `grad_checkpoint` unset (None), the
    attempt is undone (parameter gradients dropped, the CPU and CUDA RNG states put back, its memory freed),
    checkpointing is turned on, `switched` gets the one line that says so, and the attempt runs again: the run goes
    on as if `grad_checkpoint` had been given from the start (the attempt must change nothing else: the optimizer
    steps after it). Out of memory otherwise is a VmrnnError: `grad_checkpoint` false refuses the switch, and with
    checkpointing on the batch is too large."""
    rng = _rng_states()
    try:
        return attempt()
    except torch.OutOfMemoryError as err:
        reason = _reason(err)
    # outside the handler, so that the traceback's frames and the tensors they hold can be freed
    _undo(net, rng)
    if net.checkpoint_steps:
        raise VmrnnError(f"{DOES_NOT_FIT} even with per-frame activation checkpointing ({reason}); lower `batch_size`")
    if grad_checkpoint is False:
        raise VmrnnError(
            f"{DOES_NOT_FIT} with `no_grad_checkpoint` ({reason}); drop it to let vmrnn turn on activation "
            "checkpointing (same maths, one extra forward pass), or lower `batch_size`"
        )
    net.checkpoint_steps = True
    switched(TURNED_ON)
    return fit_in_memory(attempt, net, True, switched)


def compiled_forward(model: nn.Module, shape: tuple[int, ...], horizon: int) -> Callable[[Tensor, int], Tensor]:
    """model's forward through torch.compile (default mode; compiled by the first call) for inputs of `shape` at
    `horizon`; other shapes run eager rather than compile again. Shapes stay static even where dynamo met the model
    with others earlier in the process (inductor fails on its dynamic-shape graphs, torch 2.13). The module and its
    state_dict stay as they are (no `_orig_mod.` prefix)."""
    compiled = torch.compile(model, dynamic=False)
    return dispatch_to_graph(lambda frames: compiled(frames, horizon), model, shape, horizon)


def use_cuda_graphs(config: TrainConfig, device: torch.device, world: int) -> bool:
    """Whether steps run as CUDA graphs: as `cuda_graphs` says, else wherever they can (one CUDA GPU, one process,
    no `compile`: several times fewer kernel launches). An explicit `cuda_graphs` that cannot run is an error."""
    if config.cuda_graphs is None:
        return device.type == "cuda" and world == 1 and not config.compile
    if config.cuda_graphs and config.compile:
        raise OptionError(
            "compile",
            "cannot be combined with `cuda_graphs`, which captures the uncompiled model "
            "(pick one; on `resume` pass `no_cuda_graphs` or `no_compile`)",
        )
    if config.cuda_graphs and world > 1:
        raise VmrnnError(
            f"`cuda_graphs`: works in a single process only, not under torchrun with {world} "
            "processes (drop the option; on `resume` pass `no_cuda_graphs`)"
        )
    if config.cuda_graphs and device.type != "cuda":
        raise VmrnnError(
            "`cuda_graphs`: training runs on the CPU here and CUDA graphs need a CUDA GPU "
            "(drop the option; on `resume` pass `no_cuda_graphs`)"
        )
    return config.cuda_graphs
