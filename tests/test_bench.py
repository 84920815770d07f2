"""``edgedepth bench`` in a tiny configuration, its pure parts, and the peers' shapes."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
import torch

from edgedepth.bench import config as bench_config
from edgedepth.bench.cells import Cell
from edgedepth.bench.config import BenchConfig
from edgedepth.bench.machine import Machine, best_peak, cpu_isa
from edgedepth.bench.networks import build_network
from edgedepth.bench.report import flop_floor_ms, format_table, int8_summary
from edgedepth.bench.rounds import format_duration, time_left
from edgedepth.cli import main
from edgedepth.models.complexity import count_macs
from edgedepth.runtime.runtimes import runtime_of_export

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
    with torch.device("meta"):
        assert build_network("fastdepth_v3", (256, 192)).card.input_size == (256, 192)
        assert build_network("depth_anything_v2_small", (256, 192)).card.input_size == (252, 196)  # multiples of 14
        assert build_network("zipdepth_base", None).card.input_size == (512, 384)  # its own default
        assert build_network("midas_v21_small", None).card.input_size == (256, 192)


def test_int8_summary_compares_the_best_of_each_precision() -> None:
    def cell(runtime: str, threads: int, ms: float) -> Cell:
        return Cell("fastdepth_v3", runtime, threads, (256, 192), 3_600_000, 250_000_000, latencies_ms=[ms, ms + 1, ms - 1])

    cells = [cell("torch", 1, 30.0), cell("onnx", 1, 10.0), cell("openvino", 1, 12.0), cell("onnx-int8", 1, 8.0),
             cell("openvino-int8", 1, 4.0), cell("onnx", 2, 6.0)]
    # 0.5 GFLOP at 100 GFLOP/s: a 5 ms floor. Two threads have no INT8 cell: no line.
    assert int8_summary(cells, 100.0) == [
        ("- fastdepth_v3, 1 thread(s): best FP32 onnx 10.0 ms (2.00x the FLOP floor); best INT8 openvino-int8 4.0 ms, "
         "2.50x faster than the best FP32, 7.50x faster than PyTorch eager")
    ]


def test_bf16_cells_are_neither_fp32_nor_flagged_below_the_fp32_floor() -> None:
    """On an AMX-BF16 Xeon OpenVINO's default bf16 ran fastdepth at 0.63x the FP32 sgemm floor: a result, not an
    error, and not the "best FP32" either. OpenVINO reports the INT8 file's own precision as bf16 (its float parts)."""
    def cell(runtime: str, ms: float, precision: str | None = None) -> Cell:
        return Cell("fastdepth", runtime, 1, (256, 192), 3_960_000, 500_000_000, latencies_ms=[ms] * 3,
                    precision=precision)

    # 1 GFLOP at 100 GFLOP/s: a 10 ms floor.
    cells = [cell("torch", 28.0), cell("onnx", 11.0), cell("openvino", 11.5, "f32"),
             cell("openvino-default", 4.7, "bf16"), cell("openvino-int8", 3.8, "bf16")]
    table = format_table(_machine(100.0), cells, BenchConfig(runs=3, warmup=1))
    assert _floor_column(table.replace("| fastdepth |", "| m |")) == {
        ("m", "torch", "1"): "2.80", ("m", "onnx", "1"): "1.10", ("m", "openvino", "1"): "1.15",
        ("m", "openvino-default (bf16)", "1"): "0.47", ("m", "openvino-int8", "1"): "0.38"}
    assert "(!)" not in table
    assert int8_summary(cells, 100.0) == [
        ("- fastdepth, 1 thread(s): best FP32 onnx 11.0 ms (1.10x the FLOP floor); best INT8 openvino-int8 3.8 ms, "
         "2.89x faster than the best FP32, 1.24x faster than openvino-default (bf16) 4.7 ms, "
         "7.37x faster than PyTorch eager")
    ]


def test_sgemm_peak_is_the_best_of_the_measurements_through_the_run() -> None:
    # Three measurements of one machine under changing load (issue 14): load only slows sgemm, so the best is the peak.
    assert best_peak([90.0, 121.0, 144.0, 118.5]) == 144.0
    assert best_peak([97.0]) == 97.0
    with pytest.raises(ValueError):
        best_peak([])


def _cell(model: str, runtime: str, threads: int, ms: float, macs: int = 500_000_000) -> Cell:
    return Cell(model, runtime, threads, (256, 192), 3_600_000, macs, latencies_ms=[ms, ms, ms])


def _machine(gflops: float) -> Machine:
    return Machine("test CPU", ("avx2", "fma"), gflops, (0.5, 0.5, 0.5), {"torch": "2.14.1"}, (gflops - 30, gflops))


def _floor_column(table: str) -> dict[tuple[str, str, str], str]:
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| m |")]
    return {(r[0].strip(), r[1].strip(), r[2].strip()): r[9].strip() for r in rows}


def test_an_fp32_cell_below_its_flop_floor_is_flagged_as_a_measurement_error() -> None:
    # 1 GFLOP at 100 GFLOP/s: a 10 ms floor for every cell.
    cells = [
        _cell("m", "torch", 1, 12.0),          # 1.20x: a result
        _cell("m", "onnx", 1, 7.6),            # 0.76x on one FP32 thread: faster than sgemm, impossible
        _cell("m", "onnx-int8", 1, 4.0),       # 0.40x: INT8 may go below the FP32 floor
        _cell("m", "onnx", 2, 6.0),            # 0.60x: two threads may too
    ]
    table = format_table(_machine(100.0), cells, BenchConfig(runs=3, warmup=1))
    floor = _floor_column(table)
    assert floor == {("m", "torch", "1"): "1.20", ("m", "onnx", "1"): "0.76 (!)", ("m", "onnx-int8", "1"): "0.40",
                     ("m", "onnx", "2"): "0.60"}
    notes = [line for line in table.splitlines() if line.startswith("(!)")]
    assert len(notes) == 1 and "1 FP32 one-thread cell(s) below 1x" in notes[0] and "MEASUREMENT ERROR" in notes[0]
    assert "(0.76x the FLOP floor (!))" in table  # the INT8 summary's best FP32 is that cell: marked there too
    assert "the best of 2 measurements through the run, lowest 70.0" in table

    # With the peak measured on a quiet moment (140 GFLOP/s: a 7.1 ms floor), nothing is flagged, no note is added.
    table = format_table(_machine(140.0), cells, BenchConfig(runs=3, warmup=1))
    assert _floor_column(table)[("m", "onnx", "1")] == "1.06" and "(!)" not in table


def test_time_left_and_durations() -> None:
    assert time_left(3, 24, 30.0) == pytest.approx(210.0)  # 10 s a step, 21 to go
    assert time_left(24, 24, 240.0) == 0.0
    assert format_duration(time_left(0, 24, 0.0)) == "?"
    assert [format_duration(s) for s in (8.4, 59.6, 65, 3599, 3725)] == ["8 s", "1 min 00 s", "1 min 05 s",
                                                                         "59 min 59 s", "1 h 02 min"]


def test_bench_networks_are_registry_networks_run_as_predict_runs_them() -> None:
    """No replica lives in bench/: a cell's network is the registry's, with its card, fused as for inference."""
    from dataclasses import replace

    from edgedepth.models import create_model

    network = build_network("zipdepth_small", (128, 96))
    assert network.fused and network.card == replace(create_model("zipdepth_small").card, input_size=(128, 96))
    assert set(BenchConfig().models) >= {"zipdepth_base", "midas_v21_small", "depth_anything_v2_small"}


def test_unknown_bench_model_is_one_line_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--models", "midas_small", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedepth: error: unknown model 'midas_small'") and err.count("\n") == 1


@pytest.mark.slow  # three cell processes (each imports PyTorch) and two exports
def test_tiny_bench_writes_its_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench"
    assert main(["bench", "--models", "fastdepth_v3", "--runtimes", "torch,onnx,openvino", "--threads", "1",
                 "--size", "64x64", "--runs", "3", "--warmup", "1", "--out", str(out), "--chart"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md", "bench.png"]
    table = (out / "bench.md").read_text()
    assert table in printed
    rows = [line for line in table.splitlines() if line.startswith("| fastdepth_v3")]
    assert [row.split("|")[2].strip() for row in rows] == ["torch", "onnx", "openvino"]
    assert "instruction sets:" in table and "sgemm peak" in table

    report = json.loads((out / "bench.json").read_text())
    gflops = report["machine"]["sgemm_gflops"]
    assert gflops > 1.0
    # The peak is measured at the start and after each of the 4 rounds (1 warm-up + 3 timed), and is their best.
    samples = report["machine"]["sgemm_samples"]
    assert len(samples) == 5 and gflops == pytest.approx(max(samples), abs=0.01)
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
    assert row[10].strip().split()[0] == f"{onnx['median_ms'] / onnx['flop_floor_ms']:.2f}"

    # Progress on stderr (the table alone on stdout): each prepared process, the time left while timing, each cell.
    progress = captured.err.splitlines()
    assert progress[0].startswith("bench: 3 cells (1 model(s) x 3 runtime(s) x 1 thread count(s))")
    prepared = [line for line in progress if line.startswith("[prepare ")]
    assert [line.split(":")[0] for line in prepared] == [
        "[prepare 1/3] fastdepth_v3 torch", "[prepare 2/3] fastdepth_v3 onnx", "[prepare 3/3] fastdepth_v3 openvino"]
    assert all(": ready in " in line for line in prepared) and "left to prepare" in prepared[0]
    timing = [line for line in progress if line.startswith("[timing ")]
    assert timing[0].startswith("[timing 1 thread: round 1/4, 1/4 in all] about ")
    assert timing[-1] == "[timing 1 thread: round 4/4, 4/4 in all] about 0 s left"
    done = [line for line in progress if re.match(r"\[\d/3\] ", line)]
    assert done == [f"[{k + 1}/3] fastdepth_v3 {c['runtime']} 1 thread: {c['median_ms']:.1f} ms"
                    for k, c in enumerate(report["cells"])]
    assert not any(line in printed for line in progress)


@pytest.mark.slow
def test_bench_times_trained_weights_with_the_exports_checks(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bench --weights``: the user's network, its INT8 file built and checked as ``export --int8`` builds it, and
    the table says how closely each INT8 file follows FP32. A file that fails the check is a failed cell, not timed."""
    from edgedepth.export import graph

    out = tmp_path / "bench"
    assert main(["bench", "--weights", str(weights), "--runtimes", "onnx,onnx-int8", "--threads", "1", "--size",
                 "64x64", "--runs", "2", "--warmup", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    label = f"fastdepth_v3 ({weights.name})"
    assert f"| {label} | onnx | 1 | 64x64 |" in printed and f"| {label} | onnx-int8 | 1 | 64x64 |" in printed
    found = re.search(r"on the check images \(trained weights, checked as an export is\): (.*) onnx-int8 (\S+)",
                      printed)
    assert found is not None and found.group(1) == label and float(found.group(2)) >= 0.9, printed

    # Checked as an export is: an INT8 file under the bar (here: the bar raised above any file) fails its cell.
    monkeypatch.setattr(graph, "INT8_MIN_CORRELATION", 1.01)
    monkeypatch.setattr(graph.export_model, "__defaults__", tuple(
        1.01 if value == 0.9 else value for value in graph.export_model.__defaults__ or ()))
    assert main(["bench", "--weights", str(weights), "--runtimes", "onnx-int8", "--threads", "1", "--size", "64x64",
                 "--runs", "1", "--warmup", "0", "--out", str(out)]) == 0
    assert "failed: export: EdgedepthError: INT8 onnx export correlates with FP32 below 1.01" in capsys.readouterr().out


def test_bad_bench_flags_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--runtimes", "torch,tensorrt", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedepth: error: unknown runtime(s) tensorrt") and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_default_thread_counts_stay_within_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_config, "available_cores", lambda: 1)
    assert BenchConfig().threads == (1,)
    monkeypatch.setattr(bench_config, "available_cores", lambda: 8)
    assert BenchConfig().threads == (1, 2)


def test_a_file_without_counts_in_its_metadata_has_no_floor_and_no_flag() -> None:
    """A file exported before its metadata carried parameters and MACs: its row says so (—), never a fake ratio."""
    cells = [Cell("m", "onnx", 1, (256, 192), None, None, latencies_ms=[0.5, 0.5]),
             Cell("m", "onnx-int8", 1, (256, 192), None, None, latencies_ms=[0.25, 0.25])]
    table = format_table(_machine(100.0), cells, BenchConfig(files=(Path("a.onnx"), Path("b.onnx")), runs=2))
    row = next(line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| m | onnx |"))
    assert [row[4].strip(), row[5].strip(), row[9].strip()] == ["—", "—", "—"] and "(!)" not in table
    assert "each file's exported size" in table
    assert "- m, 1 thread(s): best FP32 onnx 0.5 ms; best INT8 onnx-int8 0.2 ms, 2.00x faster" in table


def test_each_exported_file_has_the_runtime_of_its_format_and_precision() -> None:
    assert [runtime_of_export(fmt, precision).name for fmt, precision in [
        ("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8"), ("torchscript", "fp32")]] == [
        "onnx", "onnx-int8", "openvino", "openvino-int8", "torchscript"]
