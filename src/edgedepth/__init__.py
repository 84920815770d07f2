"""edgedepth: real-time monocular depth estimation for embedded CPUs."""

import os

# Threads that wait for work sleep instead of spinning. OpenMP (PyTorch's intra-op pool) reads this once, when
# torch is first imported, so it is set here, before any module of ours imports torch. Spinning threads took a
# 2-core training step from 3 s to 23 s beside other busy processes (see edgedepth.core.cores). A value the user
# exported stands.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
