"""Data-parallel training across processes: torchrun's contract, in one place.

``python -m training.train ...`` is one process; ``torchrun --nproc-per-node N
-m training.train ...`` starts N, each with its own share of every batch, their
gradients averaged by DistributedDataParallel (gloo on CPUs, nccl on CUDA). The
first process (rank 0) validates, logs and writes checkpoints, and decides when
a phase ends and at which point of the schedule each step is, so that every
process takes the same decisions from the same clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in its run: rank, number of processes and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def share_of(self, batch_size: int) -> int:
        """This process's part of a global batch (the batch must split evenly)."""
        if batch_size % self.world_size:
            raise ValueError(
                f"--batch-size must be a multiple of the number of processes "
                f"({self.world_size}), got {batch_size}"
            )
        return batch_size // self.world_size

    def broadcast_floats(self, values: list[float]) -> list[float]:
        """Rank 0's values, on every process."""
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        dist.broadcast(t, src=0)
        return [float(v) for v in t.cpu()]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (on every process)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def start() -> Distributed:
    """Join the process group when started by torchrun; a single process otherwise."""
    cuda = torch.cuda.is_available()
    if not dist.is_torchelastic_launched():
        return Distributed(device=torch.device("cuda" if cuda else "cpu"))
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        local = rank % torch.cuda.device_count()
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    log.info("process %d of %d (%s, %s)", rank, world, backend, device)
    return Distributed(rank, world, device)


def stop(d: Distributed) -> None:
    """Leave the process group (after every process has finished)."""
    if d.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
