"""Cores: threads and workers sized to the process's CPU affinity, and loader workers that die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgedepth.core import cores, threads

REPO = Path(__file__).resolve().parents[1]


def test_sizes_follow_the_affinity_not_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert cores.available_cores() == 3
    assert [cores.loader_workers(n) for n in (0, 1, 4)] == [0, 1, 2]
    assert [cores.compute_threads(w) for w in (0, 2, 5)] == [3, 1, 1]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {7}, raising=False)
    assert (cores.loader_workers(4), cores.compute_threads(0)) == (0, 1)


def test_set_compute_threads_leaves_an_exported_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert threads.set_compute_threads(busy_workers=1) == 2 == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert threads.set_compute_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_importing_edgedepth_makes_waiting_threads_sleep() -> None:
    code = "import os, edgedepth; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout == "PASSIVE\n"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout == "ACTIVE\n"


# ---------------------------------------------------------------------------------------------------------------
# kill -9 on a job with loader workers leaves no worker behind


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _write_pairs(folder: Path, count: int) -> Path:
    """``count`` 320x240 photos with a 16-bit depth PNG (millimetres) beside each, as ``edgedepth synth`` lays out."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    depth = (1000 + 50 * np.arange(240, dtype=np.uint16)[:, None] * np.ones((1, 320), np.uint16)).astype(np.uint16)
    for index in range(count):
        cv2.imwrite(str(folder / f"{index:04d}.jpg"), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
        cv2.imwrite(str(folder / f"{index:04d}.png"), depth)
    return folder


def _kill_once_workers_run(command: list[str], cwd: Path) -> list[int]:
    """Start ``command``, wait for its loader worker(s), ``kill -9`` it; returns the workers' pids."""
    job = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while not workers and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = _children(job.pid)
        assert workers, f"no loader worker appeared (exit {job.poll()}): {job.stderr.read() if job.stderr else ''}"
        time.sleep(1.0)  # let the workers get busy
        job.send_signal(signal.SIGKILL)
        job.wait()
        return workers
    finally:
        if job.poll() is None:
            job.kill()


def _assert_gone(workers: list[int], seconds: float = 3.0) -> None:
    """PyTorch's own watchdog looks every 5 s and never while a worker blocks on a full queue; the kernel's
    parent-death signal kills at once."""
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"loader workers {survivors} outlived their killed parent"


needs_two_cores = pytest.mark.skipif(cores.available_cores() < 2, reason="loader workers need a second core")


@pytest.mark.slow
@needs_two_cores
def test_killed_label_run_leaves_no_worker(tmp_path: Path) -> None:
    scenes = _write_pairs(tmp_path / "scenes", 600)
    command = [sys.executable, "-m", "edgedepth.cli", "label", str(scenes), str(tmp_path / "labels"),
               "--teacher", "oracle", "--crop", "256x192", "--size", "128x96", "--workers", "1", "--batch", "2",
               "--shard-size", "50"]  # fmt: skip
    _assert_gone(_kill_once_workers_run(command, REPO))


@pytest.mark.slow
@needs_two_cores
def test_killed_train_run_leaves_no_worker(tmp_path: Path) -> None:
    scenes = _write_pairs(tmp_path / "scenes", 64)
    command = [sys.executable, "-m", "edgedepth.cli", "train", f"data.path={scenes}", "data.png=depth_mm",
               f"run.dir={tmp_path / 'run'}", "data.input_size=64x64", "data.num_workers=1", "model.pretrained=false",
               "optim.batch_size=4", "run.device=cpu", "logging.progress_bar=false", "logging.tensorboard=false",
               "schedule.epochs=100"]  # fmt: skip
    _assert_gone(_kill_once_workers_run(command, REPO))
