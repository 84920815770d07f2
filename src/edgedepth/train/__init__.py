"""``edgedepth train``: distil a teacher's inverse depth into a student, resumable, on one CPU or many GPUs.

``loop`` (the job: set-up, epochs, resume), ``config`` (the typed YAML config), ``student`` (the network as
training builds it), ``losses`` (pure), ``schedule`` (optimiser and learning rate), ``checkpoint`` (checkpoints and
what a resume may change), ``reporting`` (log, TensorBoard, progress, throughput) and ``validation`` (NYU at each
epoch end).
"""
