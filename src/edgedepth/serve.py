"""``edgedepth serve``: one Predictor behind HTTP, for a robot's other processes, a browser or ``curl``.

- ``GET /health``: JSON: the model, its runtime, input size, precision and provenance.
- ``POST /predict`` with an image file as the body (JPEG, PNG, ... anything ``edgedepth predict`` reads):
  relative inverse depth at the image's own size, as ``?format=``

  - ``npy`` (default): the float32 ``H x W`` map, a NumPy ``.npy`` file: exactly what :class:`Predictor` returns;
  - ``png16``: 16-bit PNG, min-max normalised (0 = farthest, 65535 = nearest), the map's range in the
    ``X-Inverse-Depth-Min`` / ``X-Inverse-Depth-Max`` headers, as ``edgedepth predict`` writes ``.depth.png``;
  - ``color``: the magma colour map as an RGB PNG, for eyes.

Errors are JSON ``{"error": "..."}`` with status 400 (unreadable image, bad query), 404, 411 or 413.
Connections are served in threads (the standard library's ``ThreadingHTTPServer``); the network runs one
request at a time under a lock: a runtime set up for one stream on one CPU gains nothing from two at once.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgedepth.data.sources import decode_image
from edgedepth.errors import EdgedepthError
from edgedepth.imageio import encode_png
from edgedepth.processing import format_size
from edgedepth.runtime.predictor import Predictor
from edgedepth.viz import colorize, to_uint16

FORMATS = ("npy", "png16", "color")
#: The largest request body accepted: a 50 MB image file is already far beyond any camera frame.
MAX_BODY_BYTES = 50 * 1024 * 1024


class DepthServer(ThreadingHTTPServer):
    """An HTTP server around one predictor; ``quiet`` drops the per-request log lines."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], predictor: Predictor, quiet: bool = False) -> None:
        self.predictor = predictor
        self.quiet = quiet
        self.lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(predictor: Predictor, host: str = "127.0.0.1", port: int = 8080, quiet: bool = False) -> DepthServer:
    """Bind the server (``port=0``: any free port); a port in use or a bad host is a one-line error."""
    try:
        return DepthServer((host, port), predictor, quiet)
    except OSError as exc:
        raise EdgedepthError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def describe(predictor: Predictor) -> dict[str, object]:
    """What ``GET /health`` answers."""
    export = predictor.export
    return {
        "status": "ok",
        "model": predictor.name,
        "runtime": predictor.runtime,
        "input_size": format_size(predictor.size),
        "precision": export.precision if export is not None else "fp32",
        "output": "relative inverse depth (larger is nearer), at the posted image's size",
        "provenance": predictor.provenance,
    }


def encode_depth(inverse_depth: np.ndarray, fmt: str) -> tuple[bytes, str, dict[str, str]]:
    """An inverse depth map as response bytes, content type and extra headers, for one of :data:`FORMATS`."""
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, inverse_depth.astype(np.float32, copy=False))
        return buffer.getvalue(), "application/x-npy", {}
    if fmt == "png16":
        finite = inverse_depth[np.isfinite(inverse_depth)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        headers = {"X-Inverse-Depth-Min": repr(low), "X-Inverse-Depth-Max": repr(high)}
        return encode_png(to_uint16(inverse_depth)), "image/png", headers
    return encode_png(colorize(inverse_depth)), "image/png", {}


class _Handler(BaseHTTPRequestHandler):
    server: DepthServer
    server_version = "edgedepth"

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/health":
            self._error(HTTPStatus.NOT_FOUND, f"no endpoint {urlsplit(self.path).path}: GET /health or POST /predict")
            return
        self._send(HTTPStatus.OK, json.dumps(describe(self.server.predictor)).encode(), "application/json")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/predict":
            self._error(HTTPStatus.NOT_FOUND, f"no endpoint {url.path}: POST an image file to /predict")
            return
        fmt = parse_qs(url.query).get("format", ["npy"])[0]
        if fmt not in FORMATS:
            self._error(HTTPStatus.BAD_REQUEST, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
            return
        length = self.headers.get("Content-Length")
        if length is None:
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length header")
            return
        try:
            size = int(length)
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, f"Content-Length {length!r} is not a number")
            return
        if size > MAX_BODY_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {size} bytes exceeds {MAX_BODY_BYTES}")
            return
        if size <= 0:
            self._error(HTTPStatus.BAD_REQUEST, "empty body: POST the image file's bytes")
            return
        data = self.rfile.read(size)
        try:
            image = decode_image(data, "the posted image")
        except EdgedepthError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        with self.server.lock:
            inverse_depth = self.server.predictor(image)
        body, content_type, headers = encode_depth(inverse_depth, fmt)
        self._send(HTTPStatus.OK, body, content_type, headers)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"edgedepth serve: {self.address_string()} {format % args}\n")
