"""What robots need from depth: metres and a stable picture.

``geometry`` (pinhole cameras, the floor plane, back-projection, PLY), ``fits`` (robust scale and shift, the floor
fit), ``metric_scale`` (``predict --metric``'s references and outputs) and ``stabilize`` (temporally stable video).
Pure NumPy and OpenCV: nothing here needs a training framework.
"""
