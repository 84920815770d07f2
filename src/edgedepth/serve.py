"""``edgedepth serve``: one Predictor behind HTTP, for a robot's other processes, a browser or ``curl``.

- ``GET /``: a page for a browser (one static file, no third-party code): drop or choose an image, or start the
  webcam, and its colour depth map appears beside it with the latency; the model's card, runtime and input size.
- ``GET /health``: JSON: the model, its runtime, input size, precision, card and provenance.
- ``POST /predict`` with an image file as the body (JPEG, PNG, ... anything ``edgedepth predict`` reads):
  relative inverse depth at the image's own size, as ``?format=``

  - ``npy`` (default): the float32 ``H x W`` map, a NumPy ``.npy`` file: exactly what :class:`Predictor` returns;
  - ``png16``: 16-bit PNG, min-max normalised (0 = farthest, 65535 = nearest), the map's range in the
    ``X-Inverse-Depth-Min`` / ``X-Inverse-Depth-Max`` headers, as ``edgedepth predict`` writes ``.depth.png``;
  - ``color``: the magma colour map as an RGB PNG, for eyes.

  The body is the file itself: its ``Content-Type`` may be absent, ``image/*``, ``application/octet-stream`` or
  ``application/x-www-form-urlencoded`` (what ``curl --data-binary`` sends); any other (a multipart form, JSON) is
  a 415. Each answer's ``Server-Timing`` header gives the milliseconds spent decoding, in the network and encoding.

Errors are JSON ``{"error": "..."}`` with status 400 (unreadable image, bad query, a body shorter than its
``Content-Length``), 404, 408 (the request did not arrive within the timeout), 411, 413 (a body above 50 MB or
an image above the pixel limit, :data:`edgedepth.core.imageio.DEFAULT_MAX_IMAGE_PIXELS` unless set), 415 (a body that is
not an image file, by its ``Content-Type``), 500 (a bug).

Connections are served in threads (the standard library's ``ThreadingHTTPServer``), one request each
(HTTP/1.0); the network runs one request at a time under a lock: a runtime set up for one stream on one CPU
gains nothing from two at once. Every socket operation has a timeout (``timeout``, 30 s by default) and the
body must arrive whole within it, so a client that stalls holds a thread for that long at most. Each request
logs one line: the request and its status, or, for a failure, what went wrong (a client that disconnected, a
timeout, a bad request); never a traceback (``EDGEDEPTH_DEBUG=1`` shows those of bugs). ``quiet`` drops the
lines of successful requests.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import DEFAULT_MAX_IMAGE_PIXELS, ImageTooLargeError, decode_rgb, encode_png
from edgedepth.core.sizes import format_size
from edgedepth.core.viz import colorize, to_uint16
from edgedepth.runtime.predictor import Predictor

FORMATS = ("npy", "png16", "color")
#: Content types a posted image may come with (besides none): the body is the file's bytes whatever they say.
#: ``application/x-www-form-urlencoded`` is the default of ``curl --data-binary`` and of Python's urllib.
IMAGE_CONTENT_TYPES = ("application/octet-stream", "application/x-www-form-urlencoded")
#: The browser page served at ``/`` (package data).
PAGE = "static/index.html"
#: The largest request body accepted: a 50 MB image file is already far beyond any camera frame.
MAX_BODY_BYTES = 50 * 1024 * 1024
#: Seconds a client may stall: per socket operation, and for the whole body once the headers are in.
DEFAULT_TIMEOUT_S = 30.0


def _log(line: str) -> None:
    sys.stderr.write(f"edgedepth serve: {line}\n")
    sys.stderr.flush()


class DepthServer(ThreadingHTTPServer):
    """An HTTP server around one predictor.

    ``quiet`` drops the log lines of successful requests (failures always log one line), ``timeout`` is the
    seconds a client may stall (see the module docstring), ``max_image_pixels`` the largest image accepted
    (``None`` or 0: no limit).
    """

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        predictor: Predictor,
        quiet: bool = False,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        if not timeout > 0:
            raise EdgedepthError(f"--timeout {timeout}: give a positive number of seconds")
        self.predictor = predictor
        self.quiet = quiet
        self.request_timeout = float(timeout)  # not ``timeout``: socketserver's own attribute of that name polls
        self.max_image_pixels = max_image_pixels
        self.lock = threading.Lock()
        self.page = resources.files("edgedepth").joinpath(PAGE).read_bytes()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # a bound socket's name (typed for the bytes an address may be given in)
        return f"http://{host}:{port}"

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """What escaped a handler (it handles its own failures, so a bug): one line, not socketserver's traceback."""
        exc = sys.exc_info()[1]
        _log(f"{client_address[0]} request failed: internal error: {type(exc).__name__}: {exc}")
        if os.environ.get("EDGEDEPTH_DEBUG"):
            traceback.print_exc()


def make_server(
    predictor: Predictor,
    host: str = "127.0.0.1",
    port: int = 8080,
    quiet: bool = False,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> DepthServer:
    """Bind the server (``port=0``: any free port); a port in use or a bad host is a one-line error."""
    try:
        return DepthServer((host, port), predictor, quiet, timeout=timeout, max_image_pixels=max_image_pixels)
    except OSError as exc:
        hint = "; pick another --port (0 picks a free one)" if exc.errno == errno.EADDRINUSE else ""
        raise EdgedepthError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from exc


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
        "card": predictor.card.to_dict(),
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

    def setup(self) -> None:
        # StreamRequestHandler sets it on the socket: every read and write. Typeshed calls it a ClassVar; socketserver
        # reads it per instance, so a per-request value is what it supports.
        self.timeout = self.server.request_timeout  # type: ignore[misc]
        super().setup()
        self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
        self._status: int | None = None  # the status sent, once a response has started
        self._failure: str | None = None  # why the request failed, for its log line

    def handle_one_request(self) -> None:
        """The standard library's loop body, with a timeout or a vanished client ending it in one log line."""
        self._status, self._failure = None, None
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:  # connected and left without a request (a port probe): nothing to log
                self.close_connection = True
                return
            if len(self.raw_requestline) > 65536:
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.parse_request():  # it answered the error through send_error
                return
            handler = getattr(self, f"do_{self.command}", None)
            if handler is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {self.command!r}")
                return
            handler()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
            if self._status is None:  # still reading the request: tell the client, if it still listens
                self._try_error(HTTPStatus.REQUEST_TIMEOUT,
                                f"the request did not arrive within {self.server.request_timeout:g} s")
            else:
                self._failure = f"timed out after {self.server.request_timeout:g} s sending the answer"
        except ConnectionError as exc:  # BrokenPipeError, ConnectionResetError, ...
            self.close_connection = True
            self._failure = f"client disconnected ({type(exc).__name__})"
        finally:
            self._log_outcome()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
            return
        if path != "/health":
            self._error(HTTPStatus.NOT_FOUND, f"no endpoint {path}: GET / (the page), GET /health or POST /predict")
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
        content_type = self.headers.get_content_type() if "Content-Type" in self.headers else None
        image_type = content_type is None or content_type.startswith("image/") or content_type in IMAGE_CONTENT_TYPES
        if not image_type:
            self.close_connection = True
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                        f"Content-Type {content_type}: POST the image file's bytes as the body (Content-Type "
                        "image/..., application/octet-stream or none), not a form or a document")
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
        data = self._read_body(size)
        if data is None:
            return
        start = time.perf_counter()
        try:
            image = decode_rgb(data, "the posted image", max_pixels=self.server.max_image_pixels)
        except ImageTooLargeError as exc:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc))
            return
        except EdgedepthError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        try:
            decoded = time.perf_counter()
            with self.server.lock:
                inverse_depth = self.server.predictor(image)
            inferred = time.perf_counter()
            body, content_type, headers = encode_depth(inverse_depth, fmt)
            spans = {"decode": decoded - start, "infer": inferred - decoded, "encode": time.perf_counter() - inferred}
            headers["Server-Timing"] = ", ".join(f"{name};dur={seconds * 1e3:.1f}" for name, seconds in spans.items())
        except Exception as exc:  # noqa: BLE001  (a bug, or memory: the client gets a 500, the log one line)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}: {exc}")
            if os.environ.get("EDGEDEPTH_DEBUG"):
                traceback.print_exc()
            return
        self._send(HTTPStatus.OK, body, content_type, headers)

    def _read_body(self, size: int) -> bytes | None:
        """The body's ``size`` bytes, all within the timeout; ``None`` (the error answered) if they do not come."""
        timeout = self.server.request_timeout
        deadline = time.monotonic() + timeout
        chunks, received = [], 0
        try:
            while received < size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(size - received, 1 << 20))
                if not chunk:  # the client closed its side
                    self.close_connection = True
                    self._error(HTTPStatus.BAD_REQUEST,
                                f"the body ended after {received} of its {size} bytes (Content-Length)")
                    return None
                chunks.append(chunk)
                received += len(chunk)
        except TimeoutError:
            self.close_connection = True
            self._try_error(HTTPStatus.REQUEST_TIMEOUT,
                            f"the body did not arrive within {timeout:g} s ({received} of its {size} bytes came)")
            return None
        finally:
            self.connection.settimeout(timeout)
        return b"".join(chunks)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's errors (malformed request line or headers, unknown method) as ours: JSON."""
        status = HTTPStatus(code)
        self.close_connection = True
        self._error(status, message or status.phrase)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._failure = message
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def _try_error(self, status: HTTPStatus, message: str) -> None:
        """Answer an error to a client that may be gone; its log line says the failure either way."""
        try:
            self._error(status, message)
        except OSError:
            pass
        self._failure = message

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._status = int(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _log_outcome(self) -> None:
        """The request's one log line: a failure always, a success unless the server is quiet."""
        status = self._status if self._status is not None else "-"
        request = f'"{self.requestline}"' if self.requestline else "(no request line)"
        if self._failure is not None:
            _log(f"{self.address_string()} {request} {status}: {self._failure}")
        elif self._status is not None and not self.server.quiet:
            _log(f"{self.address_string()} {request} {status}")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Nothing: :meth:`_log_outcome` writes the request's line once it is over."""

    def log_message(self, format: str, *args: object) -> None:
        self._failure = format % args  # the standard library's own complaints end up in the request's line
