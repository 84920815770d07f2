"""Where a network runs: one reading of ``--device`` and ``run.device`` for every command."""

from __future__ import annotations

import torch

from edgedepth.core.errors import EdgedepthError

#: What ``--device`` and ``run.device`` take.
DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(name: str, local_rank: int = 0, setting: str = "--device") -> torch.device:
    """The device ``name`` means: ``cpu``; ``cuda`` (this process's GPU under ``torchrun``: ``cuda:LOCAL_RANK``);
    ``cuda:N``; or ``auto``, CUDA where PyTorch sees a GPU and the CPU otherwise.

    Asking for CUDA on a machine without it, or for a device of another name, is an EdgedepthError that names
    ``setting`` (``--device``, ``run.device``) as the user wrote it.
    """
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise EdgedepthError(
                f"{setting} {name}: CUDA is not available on this machine (PyTorch {torch.__version__} sees no CUDA "
                f"device); use {setting} cpu (or auto)"
            )
        return torch.device(name) if ":" in name else torch.device("cuda", local_rank)
    raise EdgedepthError(f"{setting} {name}: unknown device; use one of {', '.join(DEVICES)}")
