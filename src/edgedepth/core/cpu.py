"""The CPU this process runs on: its name and the instruction sets that decide CNN speed and INT8 arithmetic,
read from ``/proc/cpuinfo`` (Linux; elsewhere nothing is known)."""

from __future__ import annotations

import platform
from pathlib import Path

#: Instruction sets that decide CNN speed, as /proc/cpuinfo names them (x86 ``flags``, ARM ``Features``).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
             "asimd", "asimddp", "i8mm", "sve")


def read_cpuinfo() -> str:
    """This machine's ``/proc/cpuinfo`` text, empty where there is none (not Linux)."""
    path = Path("/proc/cpuinfo")
    return path.read_text() if path.exists() else ""


def cpu_isa(cpuinfo: str) -> tuple[str, ...]:
    """The :data:`ISA_FLAGS` present in a ``/proc/cpuinfo`` text (x86 ``flags`` or ARM ``Features`` line)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            present = set(value.split())
            return tuple(flag for flag in ISA_FLAGS if flag in present)
    return ()


def cpu_name(cpuinfo: str) -> str:
    """The CPU's model name from a ``/proc/cpuinfo`` text (x86 ``model name``, ARM ``Model`` or ``CPU part``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "CPU part"):
            return value.strip()
    return platform.processor() or platform.machine()
