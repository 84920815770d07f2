"""The page ``edgedepth serve`` serves at ``/``, in headless Chromium driven through its DevTools protocol.

Upload an image and compare the depth picture the page shows with the server's colour map of it; start the
(fake) webcam and watch depth pictures arrive; check that nothing was fetched from anywhere but the server; keep a
screenshot of each in the test's folder. Skips without Chromium (``make test`` installs Debian's as root).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgedepth.core.imageio import encode_png
from edgedepth.core.viz import colorize
from edgedepth.data.synthetic import render_scene
from edgedepth.runtime.predictor import load_predictor
from edgedepth.serve import DepthServer, make_server

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic", "--window-size=1280,900", "--remote-debugging-port=0",
         "--remote-allow-origins=*", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


class DevTools:
    """A headless Chromium and one page of it, spoken to over the DevTools protocol (JSON over a WebSocket)."""

    def __init__(self, binary: str, profile: Path) -> None:
        import websocket

        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (active.is_file() and active.read_text().count("\n") >= 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
            page = next(target for target in json.load(answer) if target["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.socket.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._id:
                assert "error" not in message, (method, message["error"])
                return message["result"]
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, seconds: float = 60.0) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
            if "exceptionDetails" not in result and (value := result["result"].get("value")):  # a page still loading
                return value  # has no body yet: its expression throws, and that means "not yet"
            time.sleep(0.1)
        state = self.evaluate("document.getElementById('status').textContent")
        raise AssertionError(f"{expression} still false after {seconds} s; the page says: {state!r}")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=30)


#: The depth picture the page shows, read back through a canvas as a PNG data URL.
DEPTH_PIXELS = """(() => { const img = document.getElementById('depth'); const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight; c.getContext('2d').drawImage(img, 0, 0);
  return c.toDataURL('image/png'); })()"""


def _pixels(browser: DevTools) -> np.ndarray:
    data = base64.b64decode(browser.evaluate(DEPTH_PIXELS).split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def server(weights: Path) -> Iterator[DepthServer]:
    server = make_server(load_predictor(weights), port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        pytest.skip("no Chromium on this machine (make test installs Debian's chromium when run as root)")
    pytest.importorskip("websocket", reason="websocket-client (the dev extra) drives Chromium")
    devtools = DevTools(binary, tmp_path / "profile")
    yield devtools
    devtools.close()


@pytest.mark.slow
def test_upload_an_image_and_see_its_depth(server: DepthServer, browser: DevTools, tmp_path: Path) -> None:
    image = render_scene(6, (200, 150)).image
    (tmp_path / "room.png").write_bytes(encode_png(image))
    browser.send("Network.enable")
    browser.send("Page.navigate", url=server.url + "/")
    browser.wait_for("document.body.dataset.ready === '1'")
    card = browser.evaluate("Object.fromEntries([...document.querySelectorAll('#card dd')]"
                            ".map(dd => [dd.dataset.field, dd.textContent]))")
    assert (card["model"], card["runtime"], card["input size"]) == ("fastdepth_v3", "torch", "256x192")
    assert '"mean"' in card["card"]

    root = browser.send("DOM.getDocument")["root"]["nodeId"]
    chooser = browser.send("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    browser.send("DOM.setFileInputFiles", files=[str(tmp_path / "room.png")], nodeId=chooser)
    browser.wait_for("document.body.dataset.frames === '1'")
    shown = _pixels(browser)
    expected = colorize(server.predictor(image))
    assert shown.shape == expected.shape and float(shown.std()) > 10  # a picture, not a blank
    assert np.abs(shown.astype(int) - expected).mean() < 1.0  # the server's colour map of this image
    assert "latency" in browser.evaluate("document.getElementById('status').textContent")
    browser.screenshot(tmp_path / "page_upload.png")
    assert cv2.imread(str(tmp_path / "page_upload.png")).shape[1] == 1280  # the whole viewport
    fetched = {event["params"]["request"]["url"] for event in browser.events
               if event.get("method") == "Network.requestWillBeSent"}
    assert fetched and all(url.startswith((server.url, "blob:", "data:")) for url in fetched), fetched


@pytest.mark.slow
def test_the_webcam_streams_depth(server: DepthServer, browser: DevTools, tmp_path: Path) -> None:
    browser.send("Page.navigate", url=server.url + "/")
    browser.wait_for("document.body.dataset.ready === '1'")
    browser.evaluate("document.getElementById('camera').click()")
    browser.wait_for("Number(document.body.dataset.frames || 0) >= 3")  # Chromium's fake camera, frame after frame
    shown = _pixels(browser)
    assert shown.shape == (480, 640, 3) and float(shown.std()) > 5
    assert browser.evaluate("document.getElementById('camera').textContent") == "stop the webcam"
    browser.screenshot(tmp_path / "page_webcam.png")
    browser.evaluate("document.getElementById('camera').click()")
    assert browser.evaluate("document.getElementById('video').hidden") is True
