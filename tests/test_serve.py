"""``edgedepth serve``: a predictor over HTTP, its three answer formats, and its errors."""

from __future__ import annotations

import io
import json
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.cli import main
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import encode_png
from edgedepth.core.viz import colorize, to_uint16
from edgedepth.data.synthetic import render_scene
from edgedepth.runtime.predictor import load_predictor
from edgedepth.serve import DepthServer, make_server

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def server(weights: Path) -> Iterator[DepthServer]:
    server = make_server(load_predictor(weights), port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _request(server: DepthServer, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(server.url + path, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_predict_answers_what_the_predictor_returns(server: DepthServer) -> None:
    image = render_scene(3, (200, 150)).image
    expected = server.predictor(image)
    assert expected.shape == (150, 200) and float(expected.std()) > 0

    status, headers, body = _request(server, "/predict", encode_png(image))
    assert (status, headers["Content-Type"]) == (200, "application/x-npy")
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), expected)

    status, headers, body = _request(server, "/predict?format=png16", encode_png(image))
    assert (status, headers["Content-Type"]) == (200, "image/png")
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED), to_uint16(expected))
    assert float(headers["X-Inverse-Depth-Min"]) == float(expected.min())
    assert float(headers["X-Inverse-Depth-Max"]) == float(expected.max())

    status, _, body = _request(server, "/predict?format=color", encode_png(image))
    colour = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert status == 200
    np.testing.assert_array_equal(colour, colorize(expected))


def test_health_names_the_model(server: DepthServer) -> None:
    status, headers, body = _request(server, "/health")
    answer = json.loads(body)
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert (answer["model"], answer["runtime"], answer["input_size"], answer["precision"]) == (
        "fastdepth_v3", "torch", "256x192", "fp32")


def test_bad_requests_are_json_errors(server: DepthServer) -> None:
    image = encode_png(render_scene(4, (64, 48)).image)
    cases = {
        ("/predict", b"not an image"): (400, "the posted image"),
        ("/predict?format=tiff", image): (400, "unknown format 'tiff'"),
        ("/depth", image): (404, "no endpoint /depth"),
        ("/nowhere", None): (404, "GET /health or POST /predict"),
        ("/predict", b""): (400, "empty body"),
    }
    for (path, body), (status, message) in cases.items():
        got, headers, answer = _request(server, path, body)
        error = json.loads(answer)["error"]
        assert got == status and headers["Content-Type"] == "application/json" and message in error, (path, error)
        assert "\n" not in error
    assert _request(server, "/predict?format=npy", image)[0] == 200  # still serving after the errors


def test_port_in_use_is_a_one_line_error(weights: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--weights", str(weights), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgedepth: error: cannot listen on 127.0.0.1:{port}: ") and err.count("\n") == 1, err


@pytest.fixture
def make_test_server(server: DepthServer) -> Iterator[Callable[..., DepthServer]]:
    """Start another server around the module's predictor, with its own options; stop it at the end."""
    started = []

    def start(**options: object) -> DepthServer:
        extra = make_server(server.predictor, port=0, **options)
        threading.Thread(target=extra.serve_forever, daemon=True).start()
        started.append(extra)
        return extra

    yield start
    for extra in started:
        extra.shutdown()
        extra.server_close()


def _raw_exchange(server: DepthServer, request: bytes, wait: float = 10.0) -> tuple[float, bytes]:
    """Send raw bytes, read until the server closes; return the seconds that took and what came back."""
    with socket.create_connection(server.server_address[:2], timeout=wait) as client:
        client.sendall(request)
        start, answer = time.monotonic(), b""
        while chunk := client.recv(65536):
            answer += chunk
    return time.monotonic() - start, answer


def _blank_bilevel_png(width: int, height: int) -> bytes:
    """A blank 1-bit PNG of any size, written by hand in a few kilobytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress((b"\x00" * (1 + (width + 7) // 8)) * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_image_above_the_pixel_limit_is_a_413(server: DepthServer,
                                              make_test_server: Callable[..., DepthServer]) -> None:
    huge = _blank_bilevel_png(20000, 20000)  # 48 KB of PNG, 1.2 GB of RGB
    status, headers, body = _request(server, "/predict", huge)
    error = json.loads(body)["error"]
    assert (status, headers["Content-Type"]) == (413, "application/json"), error
    assert "20000x20000" in error and "above the pixel limit of 89,478,485" in error and "--max-image-pixels" in error
    # The limit is the server's option, exact, and JPEGs (which OpenCV decodes) obey it too.
    strict = make_test_server(quiet=True, max_image_pixels=64 * 48 - 1)
    image = render_scene(4, (64, 48)).image
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
    for data in (encode_png(image), jpeg):
        status, _, body = _request(strict, "/predict", data)
        assert status == 413 and "64x48 is 3,072 pixels" in json.loads(body)["error"]
    assert _request(make_test_server(quiet=True, max_image_pixels=64 * 48), "/predict", jpeg)[0] == 200
    assert _request(server, "/predict", jpeg)[0] == 200  # the other server's limit is its own


def test_a_short_body_times_out_with_a_408(make_test_server: Callable[..., DepthServer],
                                           capsys: pytest.CaptureFixture) -> None:
    quick = make_test_server(timeout=1.0)
    # The body is 10 of the 1000 bytes its Content-Length promises, and the client waits.
    seconds, answer = _raw_exchange(quick, b"POST /predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 408 ") and b"application/json" in head
    assert "did not arrive within 1 s (10 of its 1000 bytes came)" in json.loads(body)["error"]
    assert 0.9 < seconds < 5.0
    # Headers that never end: the same, and the server closes the connection.
    seconds, answer = _raw_exchange(quick, b"POST /predict HTTP/1.1\r\nContent-Le")
    assert answer.startswith(b"HTTP/1.0 408 ") and 0.9 < seconds < 5.0
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and err.count(" 408: ") == 2 and "Traceback" not in err, err
    with pytest.raises(EdgedepthError, match="--timeout 0: give a positive number of seconds"):
        make_server(quick.predictor, port=0, timeout=0)


def test_a_client_that_leaves_early_is_one_log_line(make_test_server: Callable[..., DepthServer],
                                                     capsys: pytest.CaptureFixture) -> None:
    logging = make_test_server()
    image = render_scene(5, (1000, 750)).image  # its answer (3 MB of .npy) outgrows the socket buffers
    body = encode_png(image)
    with socket.create_connection(logging.server_address[:2]) as client:
        client.sendall(b"POST /predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    err, deadline = "", time.monotonic() + 60
    while "disconnected" not in err and time.monotonic() < deadline:
        time.sleep(0.1)
        err += capsys.readouterr().err
    assert "client disconnected" in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith('edgedepth serve: 127.0.0.1 "POST /predict HTTP/1.1" ')
    # It goes on serving, and logs a success in one line too.
    assert _request(logging, "/health")[0] == 200
    err, deadline = "", time.monotonic() + 10  # the handler logs after the answer has left
    while not err and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capsys.readouterr().err
    assert err.count("\n") == 1 and '"GET /health HTTP/1.1" 200' in err, err


# ---------------------------------------------------------------------------------------------------------------
# The page at /, what a browser's request looks like, and load (issue 15)


def test_the_page_is_one_self_contained_file(server: DepthServer) -> None:
    status, headers, body = _request(server, "/")
    page = body.decode()
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert "getUserMedia" in page and 'type="file"' in page and "predict?format=color" in page and "health" in page
    # Nothing is fetched from elsewhere: no absolute URL in a src, href, import or fetch, no external script.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|import\s|<script[^>]+src|<link[^>]+href""", page), page
    assert _request(server, "/index.html")[2] == body
    health = json.loads(_request(server, "/health")[2])
    assert health["card"]["name"] == "fastdepth_v3" and health["card"]["input_size"] == [256, 192]


def test_what_a_browser_and_curl_send_is_accepted_and_a_form_is_a_415(server: DepthServer) -> None:
    image = encode_png(render_scene(4, (64, 48)).image)
    for content_type in ("image/png", "image/jpeg", "application/octet-stream", "application/x-www-form-urlencoded"):
        request = urllib.request.Request(server.url + "/predict?format=color", data=image,
                                         headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
            timing = response.headers["Server-Timing"]
            assert re.fullmatch(r"decode;dur=[\d.]+, infer;dur=[\d.]+, encode;dur=[\d.]+", timing), timing
    for content_type in ("multipart/form-data; boundary=x", "application/json", "text/plain"):
        request = urllib.request.Request(server.url + "/predict", data=image, headers={"Content-Type": content_type})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=60)
        error = json.loads(answer.value.read())["error"]
        assert answer.value.code == 415 and f"Content-Type {content_type.split(';')[0]}: POST the image" in error


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_four_clients_posting_fifty_images_each_and_the_memory_stays_flat(weights: Path, tmp_path: Path) -> None:
    """A real ``edgedepth serve`` process; bad requests in between change nothing."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    if not Path("/proc/self/status").is_file():
        pytest.skip("reads the server's memory from /proc (Linux)")
    command = [sys.executable, "-m", "edgedepth.cli", "serve", "--weights", str(weights), "--port", "0", "--quiet",
               "--size", "128x96", "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)})
    try:
        url = re.search(r"on (http://\S+):", process.stdout.readline()).group(1)
        images = [encode_png(render_scene(k, (160, 120)).image) for k in range(8)]
        expected = [np.load(io.BytesIO(urllib.request.urlopen(urllib.request.Request(url + "/predict", data=image),
                                                              timeout=60).read())) for image in images]

        def client(number: int, count: int) -> list[int]:
            errors = []
            for k in range(count):
                index = (number + k) % len(images)
                with urllib.request.urlopen(urllib.request.Request(url + "/predict", data=images[index]),
                                            timeout=120) as response:
                    if response.status != 200 or not np.array_equal(np.load(io.BytesIO(response.read())),
                                                                    expected[index]):
                        errors.append(k)
            return errors

        def load(count: int) -> list[int]:
            with ThreadPoolExecutor(4) as pool:
                return [e for errors in pool.map(client, range(4), [count] * 4) for e in errors]

        assert load(10) == []  # warm: the allocator has taken what four requests at once need
        before = _rss_kib(process.pid)
        for body, headers, status in ((b"\x89PNG garbage", {}, 400), (images[0], {"Content-Type": "text/html"}, 415),
                                      (b"x" * 10, {"Content-Length": str(60 * 1024 * 1024)}, 413)):
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(urllib.request.Request(url + "/predict", data=body, headers=headers), timeout=60)
            assert answer.value.code == status and "error" in json.loads(answer.value.read())
        assert load(50) == []
        after = _rss_kib(process.pid)
        assert after - before < 20 * 1024, (before, after)  # flat: 200 requests later, within 20 MB
    finally:
        process.terminate()
        process.wait(timeout=30)
