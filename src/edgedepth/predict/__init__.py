"""``edgedepth predict``: inverse depth for images, folders, globs and videos (``images``), and the real-time loop
over a video file or a camera (``video``), through one Predictor."""
