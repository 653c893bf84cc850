"""torchrun detection. torchrun sets RANK/WORLD_SIZE/LOCAL_RANK (and MASTER_ADDR/PORT); a plain
`python -m models.train` has none of them and runs as a single process without a process group."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


def setup() -> DistContext:
    if "RANK" not in os.environ:
        return DistContext()
    # gloo: CPU collectives (NCCL would need GPUs). A bounded timeout turns a hung peer into an error, not a hang.
    dist.init_process_group("gloo", timeout=timedelta(minutes=10))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def teardown(ok: bool = True) -> None:
    if dist.is_initialized():
        # Ranks leave together: a rank that tears gloo down while its peer is still writing the model can abort
        # ("terminate called without an active exception") and fail a finished run.
        if ok:
            dist.barrier()
        dist.destroy_process_group()
