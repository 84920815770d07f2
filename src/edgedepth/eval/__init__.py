"""``edgedepth eval nyu`` and ``edgedepth eval zeroshot``: scores the field reports, with protocols people trust.

``metrics`` and ``zeroshot_metrics`` (the maths, pure), ``models`` (what is scored), ``nyu`` (the seed's NYU .mat
protocol and its job), ``zeroshot_protocols``, ``rows``, ``zeroshot_results``, ``zeroshot_report`` and ``zeroshot``
(the zero-shot suite), ``report`` (tables, JSON, CSV and picture grids rendered in memory).
"""
