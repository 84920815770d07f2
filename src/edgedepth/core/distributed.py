"""The processes of a ``torchrun`` job: which one this is, and the process group they share.

``torchrun`` starts one process per GPU (or per CPU share) and tells each its place through the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``); a plain run is a job of one. :func:`process_group` joins the group for
the job's length (NCCL for tensors on GPUs, gloo for the CPU's). Nothing else coordinates processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Place:
    """This process's place in the job: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process reports and writes what the job writes once."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def place() -> Place:
    """This process's place, from the environment ``torchrun`` sets (a job of one without it)."""
    return Place(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                 int(os.environ.get("LOCAL_RANK", "0")))


def under_torchrun() -> bool:
    """Whether ``torchrun`` (or another launcher) started this process: it then owns the thread settings."""
    return "WORLD_SIZE" in os.environ


def backend_for(device: torch.device) -> str:
    """The collective backend for tensors on ``device``: NCCL on GPUs, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(here: Place, backend: str, device: torch.device | None = None) -> Iterator[None]:
    """Join the job's process group with ``backend`` for the block, on ``device`` where it is a GPU (nothing for a
    job of one, or where this process already is in a group)."""
    joined = here.distributed and not dist.is_initialized()
    if joined:
        if device is not None and device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    try:
        yield
    finally:
        if joined:
            dist.destroy_process_group()
