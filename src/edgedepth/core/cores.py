"""The cores this process may use, shared out between PyTorch's threads and data-loader workers.

On a small machine PyTorch's intra-op threads, loader workers and any other process oversubscribe the cores, and
threads that spin while they wait burn what the others need: a 2-core training step ran six times slower beside one
other busy process. Every job sizes its threads and workers here, from the cores the process actually gets (its
CPU affinity, which containers, ``taskset`` and batch schedulers restrict), never from the machine's core count.

Loader workers are also tied to their parent's life: a worker whose parent was killed (``kill -9``) dies with it
instead of blocking on a queue nobody reads. This module imports no framework (the runtime sizes its threads here
too); :mod:`edgedepth.core.threads` applies the counts to PyTorch.
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


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), and exit now if it already has."""
    libc_name = "libc.so.6" if os.uname().sysname == "Linux" else None
    if libc_name is not None:
        ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
