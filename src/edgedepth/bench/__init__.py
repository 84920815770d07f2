"""``edgedepth bench``: models over runtimes, side by side, in one interleaved run.

``config`` (what to time), ``machine`` (the CPU, its instruction sets, its sgemm peak), ``cells`` (a model on a
runtime at a thread count, and the process each model x runtime runs in), ``rounds`` (the turns), ``report`` (the
table, its FLOP-floor multiples and files) and ``run`` (the job).
"""
