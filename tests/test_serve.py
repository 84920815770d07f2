"""``edgedepth serve``: a predictor over HTTP, its three answer formats, and its errors."""

from __future__ import annotations

import io
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.cli import main
from edgedepth.data.synthetic import render_scene
from edgedepth.imageio import encode_png
from edgedepth.runtime.predictor import load_predictor
from edgedepth.serve import DepthServer, make_server
from edgedepth.viz import colorize, to_uint16


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
