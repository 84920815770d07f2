"""``edgedepth demo``: the whole pipeline on synthetic scenes, end to end on a laptop CPU.

It renders training scenes and a test set in NYU Depth v2's layout, labels the training scenes with the oracle
teacher (their exact depth stands in for MiDaS) through the real label pipeline and its shards, trains
``fastdepth_v3`` from scratch on those shards, evaluates the trained and the untrained student with the seed's
protocol through the real NYU code path, and writes ``report.html``. Every step is
the real command's code and resumes, so a second run reuses what is done. It shows that the pipeline
works; it is not the recipe for a useful model (Places + a MiDaS or Depth Anything teacher on a GPU).
"""
