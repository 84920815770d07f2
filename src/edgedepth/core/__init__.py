"""What every part of edgedepth uses, and nothing of edgedepth beneath it.

``errors`` (the one user-facing exception) and ``logs`` (how messages reach a terminal); ``files`` (path checks,
atomic writes) and ``imageio`` (decoding images and videos, PNGs); ``sizes`` (network input sizes and boxes),
``processing`` (the one pre- and post-processing) and ``depth`` (the depth representation: least-squares alignment
and the conversion to metres); ``viz`` (colour maps); ``config`` (typed YAML configs); ``cores``, ``devices`` and
``distributed`` (threads, the device, and the processes of a ``torchrun`` job).
"""
