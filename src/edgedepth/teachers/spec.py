"""Teacher specs: the one text form (``--teacher SPEC``) that names any teacher, and the factory behind it."""

from __future__ import annotations

from edgedepth.core.devices import resolve_device
from edgedepth.core.errors import EdgedepthError
from edgedepth.teachers.base import Teacher
from edgedepth.teachers.hf import HF_ALIASES, HFTeacher
from edgedepth.teachers.midas import MidasTeacher
from edgedepth.teachers.onnx import OnnxTeacher
from edgedepth.teachers.oracle import OracleTeacher

#: Every form a teacher spec may take, for help texts and error messages.
SPEC_FORMS = (
    "hf:<repo id or local dir>",
    "midas:<model type>[@<repo dir>][:<weights path>]",
    "onnx:<path>[?size=WxH&mean=R,G,B&std=R,G,B]",
    "oracle",
    *HF_ALIASES,
)


def create_teacher(spec: str, device: str = "cpu") -> Teacher:
    """Build the teacher a spec names, on ``device`` ("cpu", "cuda", "cuda:N").

    Forms: ``hf:<repo id or local dir>`` (transformers), ``midas:<model type>[@<repo dir>][:<weights path>]``
    (MiDaS torch.hub), ``onnx:<path>[?size=WxH&mean=R,G,B&std=R,G,B]``, ``oracle`` (inverse ground truth),
    or an alias of :data:`edgedepth.teachers.hf.HF_ALIASES` (``midas-dpt-large``, ``depth-anything-v2-small``...).
    A spec that does not parse raises :class:`EdgedepthError` listing these forms.
    """
    spec = spec.strip()
    device = str(resolve_device(device))
    kind, _, rest = spec.partition(":")
    if spec == "oracle":
        return OracleTeacher()
    if spec in HF_ALIASES or (kind == "hf" and rest):
        return HFTeacher(rest if kind == "hf" else spec, device)
    if kind == "midas" and rest:
        return MidasTeacher(rest, device)
    if kind == "onnx" and rest:
        return OnnxTeacher(rest, device)
    raise EdgedepthError(f"teacher {spec!r} not understood; use one of: {', '.join(SPEC_FORMS)}")
