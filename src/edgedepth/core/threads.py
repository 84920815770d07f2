"""PyTorch's threads and its data-loader workers, sized by :mod:`edgedepth.core.cores` to the cores this process
may use (the training side's half of it: the runtime's half imports no framework)."""

from __future__ import annotations

import os

import torch

from edgedepth.core.cores import compute_threads, die_with_parent


def set_compute_threads(busy_workers: int = 0) -> int:
    """Give PyTorch's intra-op pool the cores left to this process; returns the thread count it now uses.

    An ``OMP_NUM_THREADS`` in the environment (the user's, or ``torchrun``'s one per process) is left to stand.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = compute_threads(busy_workers)
    torch.set_num_threads(threads)
    return threads


class WorkerInit:
    """A DataLoader ``worker_init_fn``: one thread per worker, and death with the process that started it.

    A class rather than a closure so that it pickles under the ``spawn`` start method too.
    """

    def __init__(self) -> None:
        self.parent_pid = os.getpid()

    def __call__(self, worker_id: int) -> None:
        die_with_parent(self.parent_pid)
        torch.set_num_threads(1)
