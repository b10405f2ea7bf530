"""Divergence: every step's loss and gradient must stay finite, checked without stalling a GPU."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vmrnn_cli.errors import VmrnnError


class Diverged(VmrnnError):
    """Training met a non-finite loss or gradient; nothing was saved after the last finite checkpoint."""

    def __init__(self, epoch: int, step: int, lr: float) -> None:
        super().__init__(
            f"training diverged at epoch {epoch}, step {step}: the loss or its gradient is not finite; best.pt and "
            f"last.pt keep the last finite state (if any was saved); train again with a lower `lr` (this run: {lr:g})"
        )


class FiniteWatch:
    """Records whether each step's loss and gradient norm are finite and raises Diverged for the first that is not.

    On the CPU a step is checked at once, before the optimizer uses its gradient. On a GPU the flag is copied to
    the host without waiting and read one step later, so the GPU never idles for it; a checkpoint calls `settle`
    first, so no non-finite state is ever saved. Under DDP all ranks agree on the flag.
    """

    def __init__(self, device: torch.device, world: int, lr: float) -> None:
        self.device, self.world, self.lr = device, world, lr
        self.pending: tuple[Tensor, torch.cuda.Event | None, int, int] | None = None

    def record(self, loss: Tensor, net: nn.Module, epoch: int, step: int) -> None:
        """Note step `step` (1-based) of epoch `epoch`: its loss and the gradients now in `net`."""
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=math.inf, foreach=True)
        finite = (torch.isfinite(loss.detach()) & torch.isfinite(norm)).to(torch.int32)
        if self.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        previous = self.pending
        if self.device.type == "cuda":
            host = torch.empty((), dtype=torch.int32, pin_memory=True)
            host.copy_(finite, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.pending = (host, event, epoch, step)
            if previous is not None:
                self._check(previous)
        else:
            self.pending = None
            self._check((finite, None, epoch, step))

    def settle(self) -> None:
        """Check the step still pending (waits for it on a GPU)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._check(pending)

    def _check(self, pending: tuple[Tensor, torch.cuda.Event | None, int, int]) -> None:
        flag, event, epoch, step = pending
        if event is not None:
            event.synchronize()
        if not int(flag):
            raise Diverged(epoch, step, self.lr)
