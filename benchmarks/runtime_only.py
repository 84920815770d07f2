"""Issue 29's figures: the runtime-only install against the runtimes alone and against the code before it.

    .venv/bin/python benchmarks/runtime_only.py [--before b49d515] [--frames 300] [--requests 200] [--repeats 3]
        [--work /tmp/edgedepth-runtime-only] [--out runtime_only.json]

One run, three sides, on the same files and the same machine:

- **now**: this checkout installed in a fresh virtual environment with ``pip install .`` (the runtime alone), then
  ``pip install .[openvino]`` for the OpenVINO files;
- **bare**: the runtime alone in a 20-line script (ONNX Runtime or OpenVINO, OpenCV's resize and the
  normalisation, 5 runs), in that same environment;
- **before**: the commit ``--before`` (the last one before issue 29, where every command imported PyTorch), run
  from a git worktree with the full ``.venv``.

The files are ``fastdepth_v3`` and ``zipdepth_base`` with random weights (speed and memory only) at their default
sizes, exported by the full install as ONNX FP32, ONNX INT8 and OpenVINO INT8 (bench's files). It prints:

1. installed sizes: the runtime-only environment (with and without the OpenVINO extra) and the full ``.venv``;
2. ``edgedepth predict one.jpg --weights F`` (a 640x480 JPEG): peak RSS (``wait4``'s ``ru_maxrss``) and wall, the
   median of ``--repeats`` runs, for now, bare and before; targets: RSS within 1.5x of bare, wall within 2x;
3. ``predict --video`` on a ``--frames``-frame 640x480 clip with ``fastdepth_v3``'s files, one network thread and
   the default: FPS now and before, stabilised too, and the peak RSS after 50 frames against after the whole clip
   (flat: within 5 %);
4. ``serve`` with ``fastdepth_v3`` ONNX FP32 under 4 concurrent clients for ``--requests`` requests: requests/s,
   p50 and p99 latency, the server's peak RSS, now and before;
5. ``--stabilize`` alone: :class:`~edgedepth.robot.stabilize.Stabilizer` on ``fastdepth_v3``'s 256x192 outputs for the
   clip's frames, in this process on one core, median ms per frame (``--stabilizer-only`` prints just this).

The CPU's name and instruction sets head the output; run it on a quiet machine (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgedepth.bench.machine import cpu_isa, cpu_name, read_cpuinfo
from edgedepth.data.synthetic import render_scene

REPO = Path(__file__).resolve().parents[1]
FULL_PYTHON = Path(sys.executable)
MODELS = ("fastdepth_v3", "zipdepth_base")
RUNTIMES = ("onnx", "onnx-int8", "openvino-int8")

#: The runtime alone: what a user writes with nothing but the runtime, OpenCV and NumPy (the issue's 5 runs).
BARE = '''
import sys
import cv2, numpy as np
path, image = sys.argv[1], sys.argv[2]
if path.endswith(".onnx"):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name, (_, _, height, width) = session.get_inputs()[0].name, session.get_inputs()[0].shape
    run = lambda x: session.run(None, {name: x})[0]
else:
    import openvino as ov
    compiled = ov.Core().compile_model(path, "CPU")
    _, _, height, width = list(compiled.inputs[0].shape)
    request = compiled.create_infer_request()
    run = lambda x: request.infer({0: x})[0]
rgb = cv2.cvtColor(cv2.imread(image), cv2.COLOR_BGR2RGB)
x = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
x = ((x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)).astype(np.float32).transpose(2, 0, 1)[None].copy()
for _ in range(5):
    depth = run(x)
'''


@dataclass(frozen=True)
class Run:
    """One process: its wall seconds, its peak resident memory in MiB, and what it printed."""

    seconds: float
    peak_mib: float
    stdout: str


#: Runs a command and writes its peak RSS (KiB) to a file: Linux carries a process's peak across fork and exec
#: (``ru_maxrss`` is at least the forking process's RSS), so commands start from this small launcher (``-S``: no
#: site, a few MiB; measured and printed as the launcher's floor), not from this benchmark's process.
LAUNCHER = (
    "import os, sys\n"
    "pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}')\n"
)


def run_process(command: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``command`` to its end from :data:`LAUNCHER`; its wall time and its own peak RSS."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "rusage"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(report), *command], capture_output=True,
                              text=True, env=env, check=False)
        seconds = time.perf_counter() - start
        peak_kib, code = (int(value) for value in report.read_text().split())
    if code != 0 or done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}): {done.stderr[-2000:]}")
    return Run(seconds, peak_kib / 1024, done.stdout)


def folder_mib(path: Path) -> float:
    """Bytes of the files under ``path`` (links not followed), in MiB."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total / 2**20


class Sides:
    """How each side runs ``edgedepth`` and a script."""

    def __init__(self, work: Path, before: str) -> None:
        self.venv = work / "runtime-venv"
        self.python = self.venv / "bin" / "python"
        self.before_tree = work / "before"
        self.before_env = {**os.environ, "PYTHONPATH": str(self.before_tree / "src")}
        self.before = before

    def build(self) -> dict[str, float]:
        """The runtime-only environment (sizes with and without OpenVINO) and the worktree of the code before."""
        if self.venv.exists():
            shutil.rmtree(self.venv)
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        pip = [str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, str(REPO)], check=True)
        sizes = {"runtime only (pip install edgedepth)": folder_mib(self.venv)}
        subprocess.run([*pip, f"{REPO}[openvino]"], check=True)
        sizes["runtime + openvino extra"] = folder_mib(self.venv)
        sizes["full .venv (make install: train, dev)"] = folder_mib(FULL_PYTHON.parents[1])
        if self.before_tree.exists():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.before_tree)], check=False)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(self.before_tree), self.before],
                       check=True, capture_output=True)
        probe = run_process([str(FULL_PYTHON), "-c", "import edgedepth; print(edgedepth.__file__)"], self.before_env)
        if not probe.stdout.startswith(str(self.before_tree)):
            raise RuntimeError(f"the code before is not the one imported: {probe.stdout}")
        return sizes

    def now(self, *args: str) -> list[str]:
        return [str(self.venv / "bin" / "edgedepth"), *args]

    def old(self, *args: str) -> list[str]:
        return [str(FULL_PYTHON), "-m", "edgedepth.cli", *args]

    def remove(self) -> None:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.before_tree)], check=False)


def export_files(folder: Path) -> dict[tuple[str, str], Path]:
    """Each model x runtime's file, made as ``edgedepth bench`` makes them (the full install's job)."""
    from edgedepth.bench.networks import build_network, cell_file

    files = {}
    for name in MODELS:
        model = build_network(name, None)
        for runtime in RUNTIMES:
            files[name, runtime] = cell_file(model, runtime, folder)[0]
    return files


def predict_table(sides: Sides, files: dict[tuple[str, str], Path], photo: Path, out: Path, repeats: int) -> list[dict]:
    """``predict`` now, bare and before on each file; medians of ``repeats`` interleaved runs."""
    rows = []
    bare = out / "bare.py"
    bare.write_text(BARE)
    for (name, runtime), path in files.items():
        commands = {
            "now": (sides.now("predict", str(photo), "--weights", str(path), "--out", str(out / "now")), None),
            "bare": ([str(sides.python), str(bare), str(path), str(photo)], None),
            "before": (sides.old("predict", str(photo), "--weights", str(path), "--out", str(out / "before")),
                       sides.before_env),
        }
        runs: dict[str, list[Run]] = {side: [] for side in commands}
        for _ in range(repeats):
            for side, (command, env) in commands.items():
                runs[side].append(run_process(command, env))
        row = {"model": name, "runtime": runtime}
        for side, done in runs.items():
            row[f"{side}_mib"] = statistics.median(r.peak_mib for r in done)
            row[f"{side}_s"] = statistics.median(r.seconds for r in done)
        rows.append(row)
        print(f"  predict {name} {runtime}: now {row['now_mib']:.0f} MiB {row['now_s']:.2f} s, bare "
              f"{row['bare_mib']:.0f} MiB {row['bare_s']:.2f} s, before {row['before_mib']:.0f} MiB "
              f"{row['before_s']:.2f} s", file=sys.stderr, flush=True)
    return rows


def _fps(stdout: str) -> float:
    return float(re.search(r"([\d.]+) FPS end to end", stdout).group(1))  # type: ignore[union-attr]


def video_table(sides: Sides, files: dict[tuple[str, str], Path], clip: Path, frames: int) -> list[dict]:
    """The live loop over ``clip`` on fastdepth_v3's files: FPS now and before, and RSS after 50 frames vs all."""
    rows = []
    for runtime in RUNTIMES:
        path = files["fastdepth_v3", runtime]
        for threads in (["--threads", "1"], []):
            for stabilize in ([], ["--stabilize"]):
                flags = ["--video", str(clip), "--weights", str(path), *threads, *stabilize]
                now_all = run_process(sides.now("predict", *flags))
                now_50 = run_process(sides.now("predict", *flags, "--limit", "50"))
                before = run_process(sides.old("predict", *flags), sides.before_env)
                row = {"runtime": runtime, "threads": threads[-1] if threads else "default",
                       "stabilize": bool(stabilize), "now_fps": _fps(now_all.stdout), "before_fps": _fps(before.stdout),
                       "now_mib_50": now_50.peak_mib, "now_mib_all": now_all.peak_mib, "before_mib": before.peak_mib,
                       "stabilize_ms": (float(re.search(r"stabilise ([\d.]+) ms", now_all.stdout).group(1))  # type: ignore[union-attr]
                                        if stabilize else None)}
                rows.append(row)
                print(f"  video {runtime} threads {row['threads']} stabilize {row['stabilize']}: now "
                      f"{row['now_fps']:.1f} FPS, before {row['before_fps']:.1f} FPS", file=sys.stderr, flush=True)
    assert frames > 50
    return rows


def _peak_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def serve_side(command: list[str], env: dict[str, str] | None, image: bytes, requests: int) -> dict:
    """A server under 4 clients posting ``requests`` images in all (after 8 to warm up): its figures."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"on (http://\S+):", line).group(1) + "/predict?format=npy"  # type: ignore[union-attr]

        def post(_: int) -> float:
            start = time.perf_counter()
            with urllib.request.urlopen(urllib.request.Request(url, data=image, headers={"Content-Type": "image/jpeg"}),
                                        timeout=300) as answer:
                answer.read()
            return time.perf_counter() - start

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, range(8)))
            start = time.perf_counter()
            latencies = sorted(pool.map(post, range(requests)))
            seconds = time.perf_counter() - start
        peak = _peak_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"requests_per_s": requests / seconds, "p50_ms": 1e3 * statistics.median(latencies),
            "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], "peak_mib": peak}


def serve_table(sides: Sides, path: Path, photo: Path, requests: int) -> dict[str, dict]:
    image = photo.read_bytes()
    flags = ["serve", "--weights", str(path), "--port", "0", "--quiet"]
    return {"now": serve_side(sides.now(*flags), None, image, requests),
            "before": serve_side(sides.old(*flags), sides.before_env, image, requests)}


def stabilizer_ms(clip: Path, frames: int) -> float:
    """Median wall ms per frame of the Stabilizer alone on fastdepth_v3's 256x192 outputs (random weights, batch
    norms drawn so the maps have structure) for the clip's frames, after the first, each given the flicker it exists
    to remove (a global scale off by 5 % and 1 % noise, drawn per frame), so its robust fit does its full work."""
    from edgedepth.models import create_model
    from edgedepth.robot.stabilize import Stabilizer
    from edgedepth.runtime.pytorch import TorchPredictor

    model = create_model("fastdepth_v3").eval()
    for module in model.modules():
        if hasattr(module, "running_var"):
            module.running_var.uniform_(0.5, 2.0)
    predictor = TorchPredictor(model)
    capture = cv2.VideoCapture(str(clip))
    outputs = []
    while len(outputs) < frames:
        ok, bgr = capture.read()
        if not ok:
            break
        outputs.append(predictor.network_output([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)])[0, 0])
    generator = np.random.default_rng(0)
    flickering = [output * np.float32(1 + 0.05 * generator.standard_normal())
                  + np.float32(0.01 * np.abs(output).mean()) * generator.standard_normal(output.shape).astype(np.float32)
                  for output in outputs]
    stabilizer, times = Stabilizer(), []
    stabilizer(flickering[0])
    for output in flickering[1:]:
        start = time.perf_counter()
        stabilizer(output)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def write_clip(path: Path, frames: int) -> None:
    """A ``frames``-frame 640x480 MP4 of ten synthetic rooms, each held for a tenth of it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (640, 480))
    scenes = [cv2.cvtColor(render_scene(k, (640, 480)).image, cv2.COLOR_RGB2BGR) for k in range(10)]
    for k in range(frames):
        writer.write(scenes[k * len(scenes) // frames])
    writer.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="b49d515", help="the commit before issue 29 (torch everywhere)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgedepth-runtime-only")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--stabilizer-only", action="store_true", help="time the Stabilizer alone, nothing else")
    args = parser.parse_args()
    cpuinfo = read_cpuinfo()
    header = (f"CPU: {cpu_name(cpuinfo)}, {os.cpu_count()} CPUs; instruction sets: {', '.join(cpu_isa(cpuinfo))}; "
              f"load average at start {os.getloadavg()[0]:.2f}")
    print(header, file=sys.stderr, flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stabilizer_only:
        write_clip(args.work / "clip.mp4", args.frames)
        print(f"{header}\n\nStabilizer alone, 256x192: {stabilizer_ms(args.work / 'clip.mp4', args.frames):.3f} ms/frame")
        return
    sides = Sides(args.work, args.before)
    try:
        print("building the runtime-only environment and the worktree before ...", file=sys.stderr, flush=True)
        sizes = sides.build()
        files = export_files(args.work / "files")
        photo = args.work / "one.jpg"
        cv2.imwrite(str(photo), cv2.cvtColor(render_scene(7, (640, 480)).image, cv2.COLOR_RGB2BGR))
        clip = args.work / "clip.mp4"
        write_clip(clip, args.frames)
        floor_mib = run_process(["true"]).peak_mib
        predicted = predict_table(sides, files, photo, args.work, args.repeats)
        video = video_table(sides, files, clip, args.frames)
        served = serve_table(sides, files["fastdepth_v3", "onnx"], photo, args.requests)
        stabilize_alone = stabilizer_ms(clip, args.frames)
    finally:
        sides.remove()

    print(f"# Runtime-only edgedepth (issue 29)\n\n{header}\n")
    print("| environment | installed MiB |\n|---|---|")
    for name, mib in sizes.items():
        print(f"| {name} | {mib:.0f} |")
    print("\n`edgedepth predict one.jpg --weights F` (640x480 JPEG), median of "
          f"{args.repeats}: peak RSS and wall of the whole process (launcher floor {floor_mib:.0f} MiB)\n")
    print("| model | runtime | now MiB | bare MiB | now / bare | before MiB | now s | bare s | now / bare | before s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in predicted:
        print(f"| {r['model']} | {r['runtime']} | {r['now_mib']:.0f} | {r['bare_mib']:.0f} | "
              f"{r['now_mib'] / r['bare_mib']:.2f}x | {r['before_mib']:.0f} | {r['now_s']:.2f} | {r['bare_s']:.2f} | "
              f"{r['now_s'] / r['bare_s']:.2f}x | {r['before_s']:.2f} |")
    print(f"\n`predict --video` on a {args.frames}-frame 640x480 clip, fastdepth_v3 (network threads: --threads)\n")
    print("| runtime | threads | stabilise | now FPS | before FPS | now / before | stabilise ms/frame "
          "| RSS after 50 frames MiB | after all MiB | growth | before MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in video:
        stabilize = f"{r['stabilize_ms']:.2f}" if r["stabilize_ms"] is not None else "—"
        print(f"| {r['runtime']} | {r['threads']} | {'yes' if r['stabilize'] else 'no'} | {r['now_fps']:.1f} | "
              f"{r['before_fps']:.1f} | {r['now_fps'] / r['before_fps']:.2f}x | {stabilize} | {r['now_mib_50']:.0f} | "
              f"{r['now_mib_all']:.0f} | {r['now_mib_all'] / r['now_mib_50'] - 1:+.1%} | {r['before_mib']:.0f} |")
    print(f"\n`serve` (fastdepth_v3 ONNX FP32), 4 concurrent clients, {args.requests} requests of the 640x480 JPEG\n")
    print("| side | requests/s | p50 ms | p99 ms | peak RSS MiB |\n|---|---|---|---|---|")
    for side, s in served.items():
        print(f"| {side} | {s['requests_per_s']:.1f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['peak_mib']:.0f} |")
    print(f"\n`--stabilize` alone (Stabilizer, fastdepth_v3's 256x192 outputs, one core): {stabilize_alone:.3f} ms/frame")
    if args.out:
        document = {"stabilizer_alone_ms": stabilize_alone, "machine": header, "sizes_mib": sizes, "launcher_floor_mib": floor_mib, "predict": predicted, "video": video, "serve": served,
                    "args": {k: str(v) for k, v in vars(args).items()}}
        args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
