"""OpenVINO's per-operator profile of fastdepth_v3 at 256x192, one thread: the kernels FP32, bf16 and INT8 run.

    PYTHONPATH=src python benchmarks/openvino_kernels.py [OUT_DIR]

Kernel names say which instructions run: ``brgconv_avx512_1x1_I8`` is AVX-512 (VNNI) INT8, an AMX CPU shows
``brgconv_avx512_amx_*``; ``_bf16`` kernels are the bf16 precision OpenVINO picks by default on AVX-512 BF16 CPUs.
Random weights: the kernels do not depend on them, and times are one run's, for shares, not for benchmarks/README.md.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from edgedepth.export.graph import export_model
from edgedepth.models import create_model, prepare_for_inference


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench_out/openvino_kernels")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    m = prepare_for_inference(create_model("fastdepth_v3"))
    cal = [np.random.default_rng(k).standard_normal((1, 3, 192, 256), dtype=np.float32) for k in range(4)]
    export_model(m, out / "fp32.xml", "openvino", min_correlation=None, fp32_tolerance=None)
    export_model(
        m, out / "int8.xml", "openvino", calibration=cal, min_correlation=None, fp32_tolerance=None, quantizer="nncf"
    )
    core = ov.Core()
    for name, path, hint in (("fp32", "fp32.xml", "f32"), ("bf16", "fp32.xml", "bf16"), ("int8", "int8.xml", None)):
        cfg = {"PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": 1}
        if hint:
            cfg["INFERENCE_PRECISION_HINT"] = hint
        c = core.compile_model(str(out / path), "CPU", cfg)
        r = c.create_infer_request()
        for _ in range(3):
            r.infer({0: cal[0]})
        kinds: collections.Counter[tuple[str, str]] = collections.Counter()
        ms: collections.Counter[tuple[str, str]] = collections.Counter()
        for p in r.get_profiling_info():
            if p.status.name != "EXECUTED":
                continue
            kinds[(p.node_type, p.exec_type)] += 1
            ms[(p.node_type, p.exec_type)] += p.real_time.total_seconds() * 1e3
        print(f"== {name} (precision {c.get_property('INFERENCE_PRECISION_HINT')}): total {sum(ms.values()):.2f} ms")
        for key, t in ms.most_common(12):
            print(f"  {key[0]:<16} {key[1]:<40} n={kinds[key]:<3} {t:.2f} ms")


if __name__ == "__main__":
    main()
