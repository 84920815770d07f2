"""``edgedepth bench`` in a tiny configuration, its pure parts, and the peers' shapes."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from edgedepth.bench import Cell, build_network, cpu_isa, flop_floor_ms, int8_summary, timing_size
from edgedepth.cli import main
from edgedepth.models.complexity import count_macs, count_parameters

X86_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
"""
ARM_CPUINFO = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp i8mm
CPU part\t: 0xd0c
"""


def test_instruction_sets_from_cpuinfo() -> None:
    assert cpu_isa(X86_CPUINFO) == ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")
    assert cpu_isa(ARM_CPUINFO) == ("asimd", "asimddp", "i8mm")
    assert cpu_isa("processor : 0\n") == ()


def test_flop_floor_and_timing_sizes() -> None:
    assert flop_floor_ms(500_000_000, 100.0) == pytest.approx(10.0)  # 1 GFLOP at 100 GFLOP/s
    assert timing_size("fastdepth_v3", (256, 192)) == (256, 192)
    assert timing_size("midas_small", (256, 192)) == (256, 256)  # MiDaS v2.1 small's own size
    assert timing_size("depth_anything_v2_small", (256, 192)) == (252, 196)  # nearest multiples of 14


def test_int8_summary_compares_the_best_of_each_precision() -> None:
    def cell(runtime: str, threads: int, ms: float) -> Cell:
        return Cell("fastdepth_v3", runtime, threads, (256, 192), 3_600_000, 250_000_000, latencies_ms=[ms, ms + 1, ms - 1])

    cells = [cell("torch", 1, 30.0), cell("onnx", 1, 10.0), cell("openvino", 1, 12.0), cell("onnx-int8", 1, 8.0),
             cell("openvino-int8", 1, 4.0), cell("onnx", 2, 6.0)]
    # 0.5 GFLOP at 100 GFLOP/s: a 5 ms floor. Two threads have no INT8 cell: no line.
    assert int8_summary(cells, 100.0) == [
        "- fastdepth_v3, 1 thread(s): best FP32 onnx 10.0 ms (2.00x the FLOP floor); best INT8 openvino-int8 4.0 ms, "
        "2.50x faster than the best FP32, 7.50x faster than PyTorch eager"
    ]


@pytest.mark.slow  # builds two peers (timm, transformers) and runs them once
def test_peers_have_their_published_shapes() -> None:
    midas = build_network("midas_small", (256, 192))
    # MiDaS v2.1 small has 21.3 M parameters (EfficientNet-Lite3 without its head, plus the decoder).
    assert count_parameters(midas) == pytest.approx(21.3e6, rel=0.01)
    with torch.no_grad():
        assert midas(torch.zeros(1, 3, 64, 96)).shape == (1, 1, 64, 96)
    anything = build_network("depth_anything_v2_small", (256, 192))
    assert anything.card.input_size == (252, 196)
    # Depth Anything V2 Small: 24.8 M parameters (DINOv2-S 22 M + DPT head).
    assert count_parameters(anything) == pytest.approx(24.8e6, rel=0.01)
    with torch.no_grad():
        assert anything(torch.zeros(1, 3, 56, 70)).shape == (1, 1, 56, 70)


@pytest.mark.slow  # three cell processes (each imports PyTorch) and two exports
def test_tiny_bench_writes_its_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench"
    assert main(["bench", "--models", "fastdepth_v3", "--runtimes", "torch,onnx,openvino", "--threads", "1",
                 "--size", "64x64", "--runs", "3", "--warmup", "1", "--out", str(out), "--chart"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md", "bench.png"]
    table = (out / "bench.md").read_text()
    assert table in printed
    rows = [line for line in table.splitlines() if line.startswith("| fastdepth_v3")]
    assert [row.split("|")[2].strip() for row in rows] == ["torch", "onnx", "openvino"]
    assert "instruction sets:" in table and "sgemm peak" in table

    report = json.loads((out / "bench.json").read_text())
    gflops = report["machine"]["sgemm_gflops"]
    assert gflops > 1.0
    macs = count_macs(build_network("fastdepth_v3", (64, 64)), (64, 64))
    for cell in report["cells"]:
        assert cell["error"] is None, cell["error"]
        assert len(cell["latencies_ms"]) == 3 and cell["median_ms"] == statistics.median(cell["latencies_ms"])
        assert cell["macs"] == macs and cell["input_size"] == [64, 64]
        assert cell["flop_floor_ms"] == pytest.approx(2 * macs / gflops / 1e6)
        assert cell["peak_rss_mib"] > 50 and cell["runtime_rss_mib"] is not None
    row = rows[1].split("|")
    onnx = report["cells"][1]
    assert row[7].strip() == f"{onnx['median_ms']:.1f}" and row[9].strip() == f"{1e3 / onnx['median_ms']:.1f}"
    assert row[10].strip() == f"{onnx['median_ms'] / onnx['flop_floor_ms']:.2f}"


def test_bad_bench_flags_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--runtimes", "torch,tensorrt", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedepth: error: unknown runtime(s) tensorrt") and err.count("\n") == 1
    assert not (tmp_path / "b").exists()
