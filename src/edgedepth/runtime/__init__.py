"""Running exported networks: the table of runtimes (``runtimes``), one Predictor over all of them (``predictor``;
``onnx``, ``openvino`` and ``pytorch`` open each kind of file), the card inside an exported file (``metadata``) and
the one timing loop (``timing``). Importing this package loads no runtime library and no training framework."""

from edgedepth.runtime.predictor import Predictor, load_predictor

__all__ = ["Predictor", "load_predictor"]
