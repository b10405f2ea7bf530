"""Several processes under `torchrun` (DDP): this process's rank, and values every rank must agree on."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Ranks:
    """This process's place in a (possibly single-process) distributed run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_env() -> Ranks:
        """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK (a plain run is rank 0 of 1)."""
        env = os.environ
        return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def agreed_signal(received: list[int], ranks: Ranks, device: torch.device) -> int:
    """The signal any rank received (all ranks must stop at the same step)."""
    if ranks.world == 1:
        return received[0]
    flag = torch.tensor([received[0]], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def sum_ranks(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """`values` summed over all processes (as they are in a single process)."""
    if ranks.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def log(ranks: Ranks, message: str) -> None:
    """A line on stderr, from the main process only."""
    if ranks.main:
        print(message, file=sys.stderr, flush=True)
