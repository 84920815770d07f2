"""``edgedepth export``: a network to the files edge runtimes run, FP32 or INT8, each checked against PyTorch.

``graph`` (write the file, check it, name it for a runtime: ``runtime_file``), ``quantize`` (INT8 by ONNX Runtime's
quantiser or NNCF, calibrated on images) and ``job`` (the command). The build side: it needs the ``train`` extra;
running the files it writes does not (:mod:`edgedepth.runtime`).
"""
