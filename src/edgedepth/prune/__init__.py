"""``edgedepth prune``: NetAdapt to a latency target measured on the runtime the network will run on.

``widths`` (the layer groups and the surgery that removes filters), ``tune`` (label splits, the short fine-tune, the
held-out score) and ``netadapt`` (the loop, resumable).
"""
