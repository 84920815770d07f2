"""The cores this process may use, shared out between PyTorch's threads and data-loader workers.

On a small machine PyTorch's intra-op threads, loader workers and any other process oversubscribe the cores, and
threads that spin while they wait burn what the others need: a 2-core training step ran six times slower beside one
other busy process. Every job sizes its threads and workers here, from the cores the process actually gets (its
CPU affinity, which containers, ``taskset`` and batch schedulers restrict), never from the machine's core count.

Loader workers are also tied to their parent's life: a worker whose parent was killed (``kill -9``) dies with it
instead of blocking on a queue nobody reads.
"""

from __future__ import annotations

import ctypes
import os
import signal

#: ``prctl`` option that asks the kernel to signal this process when its parent thread exits (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one, else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def loader_workers(requested: int) -> int:
    """Workers for a data loader: at most ``requested``, leaving at least one core to the main process."""
    return max(0, min(requested, available_cores() - 1))


def compute_threads(busy_workers: int = 0) -> int:
    """PyTorch threads for the main process when ``busy_workers`` other processes compute beside it."""
    return max(1, available_cores() - busy_workers)


def set_compute_threads(busy_workers: int = 0) -> int:
    """Give PyTorch's intra-op pool the cores left to this process; returns the thread count it now uses.

    An ``OMP_NUM_THREADS`` in the environment (the user's, or ``torchrun``'s one per process) is left to stand.
    """
    import torch  # the training side's: the rest of this module serves the runtime too

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = compute_threads(busy_workers)
    torch.set_num_threads(threads)
    return threads


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), and exit now if it already has."""
    libc_name = "libc.so.6" if os.uname().sysname == "Linux" else None
    if libc_name is not None:
        ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


class WorkerInit:
    """A DataLoader ``worker_init_fn``: one thread per worker, and death with the process that started it.

    A class rather than a closure so that it pickles under the ``spawn`` start method too.
    """

    def __init__(self) -> None:
        self.parent_pid = os.getpid()

    def __call__(self, worker_id: int) -> None:
        import torch  # a loader worker's, where PyTorch is loaded already

        die_with_parent(self.parent_pid)
        torch.set_num_threads(1)
