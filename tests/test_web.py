"""The upload page: in-process checks with Starlette's TestClient, then real headless Chromium
driving ``skinestimator serve`` over the Chrome DevTools protocol."""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinestimator import SkinLesionClassifier, make_synthetic_lesions
from skinestimator.deploy import load_model, save_model
from skinestimator.web import NOTICE, create_app


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    X, y = make_synthetic_lesions(n_samples=60, image_size=(32, 32), n_classes=4, random_state=0)
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=3, random_state=0).fit(X, y)
    path = tmp_path_factory.mktemp("web") / "model.skin"
    save_model(clf, path, training_data={"class_counts": {"a": 30, "b": 30}})
    return path


@pytest.fixture(scope="module")
def clf(model_path):
    return load_model(model_path)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A photo-sized JPEG (not the model's input size) of a synthetic lesion."""
    X, _ = make_synthetic_lesions(n_samples=1, image_size=(150, 200), n_classes=4,
                                  random_state=3)
    path = tmp_path_factory.mktemp("photos") / "lesion.jpg"
    Image.fromarray(X[0]).save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def client(clf):
    from starlette.testclient import TestClient

    return TestClient(create_app(clf, top_k=3, max_upload_bytes=200_000))


def test_page_shows_the_notice_and_the_form(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "not a diagnosis" in response.text and "id='notice'" in response.text
    assert "type='file'" in response.text and "enctype='multipart/form-data'" in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert client.get("/static/app.js").headers["content-type"].startswith(
        "application/javascript")


def test_upload_shows_top_k_and_overlay(client, clf, photo):
    response = client.post("/", files={"image": ("lesion.jpg", photo.read_bytes(),
                                                 "image/jpeg")})
    assert response.status_code == 200, response.text[-500:]
    assert response.text.count("class='prediction'") == 3
    assert "id='overlay'" in response.text and "data:image/png;base64," in response.text
    assert "style=" not in response.text, "the CSP blocks inline styles: they would be ignored"
    top = clf.predict([str(photo)])[0]
    assert f"<td class='label'>{top}</td>" in response.text.split("class='prediction'")[1]


def test_api_returns_sorted_probabilities(client, clf, photo):
    response = client.post("/api/predict", files={"image": ("x.jpg", photo.read_bytes())})
    body = response.json()
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    np.testing.assert_allclose(probabilities[0], clf.predict_proba([str(photo)]).max())
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png_base64"])))
    assert overlay.size[0] >= 256
    assert body["notice"] == NOTICE


def test_bad_uploads_get_a_clear_message_and_the_app_keeps_serving(client, photo):
    cases = [
        ({"image": ("notes.txt", b"hello, not an image", "text/plain")}, 415,
         "is not an image"),
        ({"image": ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "image/png")}, 415,
         "could not be decoded"),
        ({"image": ("big.jpg", b"\xff\xd8\xff" + b"\0" * 300_000, "image/jpeg")}, 413,
         "too large"),
        ({"image": ("empty.jpg", b"", "image/jpeg")}, 400, "is empty"),
        ({"other": ("x.jpg", b"123", "image/jpeg")}, 400, "choose a photo"),
    ]
    for files, status, text in cases:
        response = client.post("/", files=files)
        assert response.status_code == status, (files, response.status_code)
        assert "id='error'" in response.text and text in response.text, text
        assert "not a diagnosis" in response.text
    ok = client.post("/", files={"image": ("lesion.jpg", photo.read_bytes(), "image/jpeg")})
    assert ok.status_code == 200 and "id='overlay'" in ok.text


def test_upload_limit_is_shown_in_readable_decimal_units(clf, photo):
    from starlette.testclient import TestClient

    from skinestimator.web import DEFAULT_MAX_UPLOAD_BYTES

    # One unit everywhere: `serve --max-upload-mb 10` passes 10_000_000 bytes, shown "10 MB".
    assert DEFAULT_MAX_UPLOAD_BYTES == 10_000_000
    assert "up to 10 MB and" in TestClient(create_app(clf)).get("/").text
    # `--max-upload-mb 0.001` once read "the limit is 0 MB".
    tiny = TestClient(create_app(clf, max_upload_bytes=1000))
    assert "up to 1 KB and" in tiny.get("/").text
    assert 1000 < photo.stat().st_size < 60_000  # passes the header check, not the read one
    api = tiny.post("/api/predict", files={"image": ("lesion.jpg", photo.read_bytes())})
    assert api.status_code == 413
    assert api.json()["error"] == "The file is too large; the limit is 1 KB."
    big = tiny.post("/", files={"image": ("big.jpg", b"\xff\xd8\xff" + b"\0" * 1_500_000)})
    assert big.status_code == 413
    assert "The file is too large (1.5 MB); the limit is 1 KB." in big.text
    assert "up to 1.5 MB and" in TestClient(create_app(clf, max_upload_bytes=1_500_000)
                                            ).get("/").text


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in a few dozen bytes (no pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def test_images_with_too_many_pixels_are_refused_before_decoding(clf, photo):
    import warnings

    from starlette.testclient import TestClient

    from skinestimator.web import DEFAULT_MAX_IMAGE_PIXELS

    with pytest.raises(ValueError, match="max_image_pixels must be a positive integer"):
        create_app(clf, max_image_pixels=0)
    small = TestClient(create_app(clf, max_image_pixels=100 * 100))
    assert "up to 10 MB and 0.01 megapixels" in small.get("/").text
    response = small.post("/", files={"image": ("lesion.jpg", photo.read_bytes())})
    assert response.status_code == 413
    assert ("&#x27;lesion.jpg&#x27; is too large: 200 × 150 pixels (0.03 megapixels); the limit "
            "is 0.01 megapixels") in response.text
    api = small.post("/api/predict", files={"image": ("lesion.jpg", photo.read_bytes())})
    assert api.status_code == 413 and "too large" in api.json()["error"]
    buffer = io.BytesIO()
    Image.fromarray(np.full((100, 100, 3), 120, dtype=np.uint8)).save(buffer, format="PNG")
    ok = small.post("/", files={"image": ("exact.png", buffer.getvalue())})
    assert ok.status_code == 200 and "id='overlay'" in ok.text

    # Decompression bombs: tiny files declaring 100 MP (above Pillow's warning threshold) and
    # 900 MP (above its hard limit) get the same clear answer, and Pillow's warning stays out
    # of the server log.
    assert DEFAULT_MAX_IMAGE_PIXELS == 50_000_000
    client = TestClient(create_app(clf))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for side, shown in [(10_000, "10000 × 10000 pixels (100 megapixels)"),
                            (30_000, "900 megapixels")]:
            response = client.post("/api/predict",
                                   files={"image": ("bomb.png", _png_header(side, side))})
            assert response.status_code == 413, response.json()
            assert response.json()["error"] == (
                f"'bomb.png' is too large: {shown}; the limit is 50 megapixels. Please upload "
                "a smaller photo."
            )


def test_upload_limit_must_be_a_positive_integer(clf):
    # A float (5e6) or None used to be accepted, and every request then failed with a 500.
    for limit in (5e6, None, 0, -1, True, "10"):
        with pytest.raises(ValueError, match="max_upload_bytes must be a positive integer"):
            create_app(clf, max_upload_bytes=limit)
    create_app(clf, max_upload_bytes=np.int64(5_000_000))


def test_a_malformed_model_card_does_not_stop_the_page(clf, photo, monkeypatch):
    from starlette.testclient import TestClient

    card = clf.model_card_
    # What cannot be shown is left out (a list of counts, in classes_ order, was accepted by
    # save_model and then crashed create_app; a None count stopped `serve`).
    malformed = [
        {"training_data": {"class_counts": [13, 13, 14]}},
        {"training_data": {"class_counts": {"a": 13, "b": "13", "c": None}}},
        {"training_data": [1, 2], "metrics": [0.5]},
        {"training_data": {"class_counts": {"a": True}}, "metrics": {"valid_bacc": "high"}},
        {"training_data": None, "metrics": {"valid_bacc": float("nan")}},
    ]
    for edit in malformed:
        monkeypatch.setattr(clf, "model_card_", {**card, "metrics": None, **edit})
        page = TestClient(create_app(clf)).get("/")
        assert page.status_code == 200, edit
        assert "training data:" not in page.text, edit
        assert "balanced accuracy" not in page.text, edit
    for odd in (None, [1, 2], "card"):
        monkeypatch.setattr(clf, "model_card_", odd)
        assert TestClient(create_app(clf)).get("/").status_code == 200
    monkeypatch.setattr(clf, "model_card_", {**card, "metrics": {"valid_bacc": 0.5}})
    text = TestClient(create_app(clf)).get("/").text
    assert "training data: 60 images" in text and "balanced accuracy 0.500" in text


def test_an_unexpected_failure_costs_one_request_not_the_server(clf, photo, monkeypatch):
    from starlette.testclient import TestClient

    client = TestClient(create_app(clf))

    def fail(X):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(clf, "predict_proba", fail)
    response = client.post("/", files={"image": ("lesion.jpg", photo.read_bytes())})
    assert response.status_code == 500
    assert "Something went wrong" in response.text and "not a diagnosis" in response.text
    monkeypatch.undo()
    ok = client.post("/", files={"image": ("lesion.jpg", photo.read_bytes())})
    assert ok.status_code == 200 and "id='overlay'" in ok.text


# ----------------------------------------------------------------------------------------------
# real browser


def _find_chromium() -> str | None:
    for name in (os.environ.get("SKINESTIMATOR_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Chromium:
    """Just enough of the Chrome DevTools protocol: navigate, evaluate, upload, screenshot.

    Talking to the browser directly needs only Debian's ``chromium`` (no chromedriver, no
    browser download) and the small ``websocket-client`` package.
    """

    def __init__(self, binary: str):
        import websocket

        self.profile = tempfile.mkdtemp(prefix="skinestimator-chromium-")
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--window-size=1200,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and "\n" in port_file.read_text()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("headless chromium did not start")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        pages = []
        while not pages and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as reply:
                pages = [t for t in json.load(reply) if t["type"] == "page"]
            time.sleep(0.1)
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60,
                                                  suppress_origin=True)
        self._ids = itertools.count(1)
        self.send("Page.enable")

    def send(self, method: str, **params):
        call = next(self._ids)
        self.socket.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == call:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    def upload(self, selector: str, path: Path) -> None:
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture()
def served(model_path):
    """``skinestimator serve MODEL`` as a user starts it, on a free port of 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "skinestimator.cli", "serve", str(model_path), "--port",
         str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2) as reply:
                if reply.read() == b"ok":
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.communicate(timeout=5)[0] if process.poll() is not None else ""
            process.kill()
            raise AssertionError(f"skinestimator serve did not start: {output}")
        time.sleep(0.3)
    yield url
    process.terminate()
    output = process.communicate(timeout=20)[0]
    assert "127.0.0.1" in output, output  # the default bind address, as announced


@pytest.mark.browser
def test_browser_upload_shows_predictions_and_heatmap(served, clf, photo, tmp_path):
    binary = _find_chromium()
    if binary is None:
        pytest.skip("no chromium found (install Debian's 'chromium' package or set "
                    "SKINESTIMATOR_CHROMIUM)")
    pytest.importorskip("websocket", reason="the browser test needs 'websocket-client'")
    browser = Chromium(binary)
    try:
        browser.send("Page.navigate", url=served)
        browser.wait_for("document.readyState === 'complete' && "
                         "!!document.getElementById('file-input')")
        notice = browser.js("(() => { const n = document.getElementById('notice');"
                            " return [n.innerText, n.getBoundingClientRect().height]; })()")
        assert "not a diagnosis" in notice[0] and notice[1] > 20

        # Choosing a file submits the form by itself, as for a user.
        browser.upload("#file-input", photo)
        browser.wait_for("document.querySelectorAll('#predictions tr.prediction').length > 0")
        browser.wait_for("(() => { const i = document.getElementById('overlay');"
                         " return i && i.complete && i.naturalWidth > 0; })()")
        rows = browser.js("[...document.querySelectorAll('#predictions tr.prediction')]"
                          ".map(r => [r.querySelector('.label').innerText,"
                          " parseFloat(r.querySelector('.probability').innerText)])")
        assert len(rows) == 3
        assert rows[0][0] == clf.predict([str(photo)])[0]
        assert [p for _, p in rows] == sorted((p for _, p in rows), reverse=True)
        shot = browser.screenshot(tmp_path / "page-after-upload.png")
        if os.environ.get("SKINESTIMATOR_SCREENSHOT_DIR"):
            shutil.copy(shot, Path(os.environ["SKINESTIMATOR_SCREENSHOT_DIR"]) / shot.name)
        # The heatmap is on screen: the overlay's area of the screenshot holds jet colours.
        box = browser.js("(() => { const r = document.getElementById('overlay')"
                         ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height];"
                         " })()")
        scale = Image.open(shot).width / browser.js("window.innerWidth")
        left, top, width, height = (int(v * scale) for v in box)
        region = np.asarray(Image.open(shot).convert("RGB"))[top : top + height,
                                                             left : left + width]
        assert width > 100 and height > 100
        assert region.std(axis=(0, 1)).mean() > 10, "the overlay must not be blank"

        # A non-image is answered in the page, and the server keeps serving.
        text_file = tmp_path / "notes.txt"
        text_file.write_text("not a photo")
        browser.upload("#file-input", text_file)
        message = browser.wait_for("(() => { const e = document.getElementById('error');"
                                   " return e && e.innerText; })()")
        assert "not an image" in message
        browser.screenshot(tmp_path / "page-after-bad-upload.png")

        # Dragging a photo onto the drop zone works too (a PNG drawn in the page, dropped as
        # a file the way the browser delivers a real drag from the desktop).
        browser.js("""(() => {
            const canvas = document.createElement('canvas');
            canvas.width = 120; canvas.height = 90;
            const g = canvas.getContext('2d');
            g.fillStyle = '#e0b090'; g.fillRect(0, 0, 120, 90);
            g.fillStyle = '#402010'; g.beginPath(); g.arc(60, 45, 25, 0, 7); g.fill();
            canvas.toBlob(blob => {
                const transfer = new DataTransfer();
                transfer.items.add(new File([blob], 'dragged.png', {type: 'image/png'}));
                const zone = document.getElementById('dropzone');
                zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer,
                                                              bubbles: true, cancelable: true}));
                zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer,
                                                          bubbles: true, cancelable: true}));
            }, 'image/png');
        })()""")
        heading = browser.wait_for("(() => { const h = document.querySelector('#results h2');"
                                   " return h && h.innerText; })()")
        assert "dragged.png" in heading
        assert browser.js("document.querySelectorAll('#predictions tr.prediction').length") == 3
    finally:
        browser.close()
