"""A small local web page: upload a photo, see the top-k conditions and a Grad-CAM overlay."""

from __future__ import annotations

import base64
import html
import io
import ipaddress
import numbers
import os
import re
import sys
import tempfile
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["create_app", "serve", "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_MAX_IMAGE_PIXELS"]

DEFAULT_MAX_UPLOAD_BYTES = 10_000_000  # 10 MB: decimal megabytes, as --max-upload-mb
# 50 megapixels: above dermatoscope images and most phone photos (typically 12-48 MP), below
# Pillow's decompression-bomb warning (89 MP). A small file can declare a huge image (a
# "decompression bomb"), so the pixel count is checked from the header before decoding.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
_DISPLAY_SIZE = 320  # pixels: model inputs are often 32-224 px, too small to read on screen

# File signatures of the formats the page accepts. Checking them before decoding means a
# renamed executable or HTML file is turned away without ever reaching an image decoder.
_SIGNATURES = (
    (b"\xff\xd8\xff", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)
_ACCEPTED = "JPEG, PNG, WebP, TIFF, BMP or GIF"

NOTICE = (
    "Research tool, not a diagnosis. The predictions below come from a machine-learning model "
    "that can be wrong; they are not medical advice. Anyone worried about a skin lesion should "
    "see a doctor or dermatologist."
)


class UploadError(Exception):
    """A problem with the upload itself, shown to the user in the page."""

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass
class Analysis:
    filename: str
    predictions: list[tuple[str, float]]
    input_png: bytes
    overlay_png: bytes
    explained_class: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "predictions": [{"label": c, "probability": p} for c, p in self.predictions],
            "explained_class": self.explained_class,
            **self.extra,
            "overlay_png_base64": base64.b64encode(self.overlay_png).decode("ascii"),
            "notice": NOTICE,
        }


def _sniff(data: bytes) -> str | None:
    for magic, suffix in _SIGNATURES:
        if data.startswith(magic):
            return suffix
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return None


def _png(array: np.ndarray, size: int | None = None) -> bytes:
    from PIL import Image

    image = Image.fromarray(array)
    if size is not None and max(image.size) != size:
        scale = size / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.BICUBIC,
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class _Analyser:
    """Runs the classifier and Grad-CAM on one upload; one at a time (the model is shared)."""

    def __init__(self, clf, top_k: int, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 coverage: float | None = 0.9, referral=None):
        self.clf = clf
        self.top_k = max(1, min(int(top_k), len(clf.classes_)))
        self.sets = _SetMaker(clf, coverage, referral)
        self.max_image_pixels = max_image_pixels
        self._lock = threading.Lock()

    def _check_pixel_count(self, path: str, filename: str) -> None:
        """Refuse an image with more pixels than allowed, reading only the file's header."""
        from PIL import Image

        limit = f"the limit is {_megapixels(self.max_image_pixels)} megapixels"
        too_large = f"'{filename}' is too large: {{}}; {limit}. Please upload a smaller photo."
        try:
            with warnings.catch_warnings():
                # Pillow warns about images above its own bomb threshold when opening them; this
                # check decides instead, so the warning would only clutter the server log.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    width, height = image.size
        except Image.DecompressionBombError as exc:
            # Above twice Pillow's threshold Image.open refuses before giving the size.
            found = re.search(r"\((\d+) pixels\)", str(exc))
            count = (
                f"{_megapixels(int(found.group(1)))} megapixels" if found
                else "more pixels than the image decoder accepts"
            )
            raise UploadError(too_large.format(count), 413) from exc
        except Exception:  # noqa: BLE001 - unreadable headers are reported by the decoder
            return
        if width * height > self.max_image_pixels:
            count = f"{width} × {height} pixels ({_megapixels(width * height)} megapixels)"
            raise UploadError(too_large.format(count), 413)

    def __call__(self, data: bytes, filename: str) -> Analysis:
        from PIL import Image

        from skinestimator.explain import explain, overlay_heatmap
        from skinestimator.images import ImageReadError

        suffix = _sniff(data)
        if suffix is None:
            raise UploadError(
                f"'{filename}' is not an image this page can read. Please upload a photo as "
                f"{_ACCEPTED}.",
                415,
            )
        # The core's reader takes paths, so the upload goes through the exact decoding
        # (EXIF orientation, colour modes, resize policy) that training and the CLI use.
        fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="skinestimator-upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            # Under the lock: warnings.catch_warnings changes process-wide state.
            with self._lock:
                self._check_pixel_count(tmp, filename)
                try:
                    with warnings.catch_warnings():
                        # Checked above against max_image_pixels, which may exceed Pillow's
                        # warning threshold when the operator raised it.
                        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                        arrays = self.clf.to_image_array([tmp])
                except ImageReadError as exc:
                    raise UploadError(
                        f"'{filename}' looks like {suffix[1:].upper()} but could not be decoded "
                        f"(damaged or unsupported file). Please upload another photo as "
                        f"{_ACCEPTED}.",
                        415,
                    ) from exc
                proba = np.asarray(self.clf.predict_proba(arrays))[0]
                top = int(np.argmax(proba))
                heatmap = explain(self.clf, arrays, target=self.clf.classes_[top])[0]
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        image = np.asarray(arrays[0])
        if image.dtype != np.uint8:
            image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        order = np.argsort(-proba, kind="stable")[: self.top_k]
        classes = self.clf.classes_
        predictions = [(str(classes[i]), float(proba[i])) for i in order]
        overlay = overlay_heatmap(image, heatmap, size=_display_size(image.shape[:2]))
        return Analysis(
            filename=filename,
            predictions=predictions,
            input_png=_png(image, _DISPLAY_SIZE),
            overlay_png=_png(overlay),
            explained_class=str(classes[top]),
            extra=self.sets(proba),
        )


class _SetMaker:
    """The conformal prediction set and the referral flag of one image's probabilities (an
    empty dict when the model has no calibration scores or the page shows no sets)."""

    def __init__(self, clf, coverage, referral):
        from skinestimator.uncertainty import Referral, conformal_thresholds

        self.classes = clf.classes_
        self.coverage = coverage
        self.referral = referral or Referral()
        scores = getattr(clf, "conformal_scores_", None)
        self.thresholds = None
        if coverage is not None and scores is not None:
            self.thresholds = conformal_thresholds(scores, coverage, class_names=self.classes)

    def __call__(self, proba) -> dict[str, Any]:
        from skinestimator.uncertainty import prediction_sets, refer, set_labels

        if self.thresholds is None:
            return {}
        members = prediction_sets(proba[None, :], self.thresholds)
        flag = bool(refer(proba[None, :], members, self.referral)[0])
        return {"prediction_set": set_labels(proba[None, :], members, self.classes)[0],
                "coverage": float(self.coverage), "refer": flag}


def _megapixels(pixels: int) -> str:
    """``50_000_000`` -> ``"50"``, ``144_000_000`` -> ``"144"``, ``2_500`` -> ``"0.0025"``."""
    return f"{pixels / 1e6:.4g}"


def _file_size(n_bytes: int) -> str:
    """Decimal units, at most one decimal: ``10_000_000`` -> ``"10 MB"``, ``1_500`` ->
    ``"1.5 KB"``, ``999`` -> ``"999 bytes"`` (a limit of 0.001 MB must not read "0 MB")."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n_bytes} bytes" if n_bytes != 1 else "1 byte"


def _display_size(shape) -> tuple[int, int]:
    height, width = shape
    scale = _DISPLAY_SIZE / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _model_summary(clf) -> dict[str, Any]:
    """What the page says about the model. The card is informative only and may come from an
    older or another writer (or be set by hand): what cannot be shown is left out rather than
    failing the app's start."""
    card = getattr(clf, "model_card_", None)
    card = card if isinstance(card, dict) else {}
    summary = {
        "classes": [str(c) for c in clf.classes_],
        "image_size": "×".join(str(int(v)) for v in clf.image_size_),
        "backbone": card.get("backbone") or getattr(clf, "backbone", "?"),
    }
    training_data = card.get("training_data")
    counts = training_data.get("class_counts") if isinstance(training_data, dict) else None
    if (
        isinstance(counts, dict)
        and counts
        and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0
            for v in counts.values()
        )
    ):
        summary["n_train"] = sum(int(v) for v in counts.values())
    metrics = card.get("metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    for key in ("balanced_accuracy", "valid_bacc"):
        value = metrics.get(key)
        if (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and np.isfinite(float(value))
        ):
            summary["balanced_accuracy"] = float(value)
            break
    return summary


# ----------------------------------------------------------------------------------------------
# page

_CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; }
body { margin: 0; background: #f6f7f9; }
main { max-width: 74rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
.sub { color: #556; margin: 0 0 1rem; }
.notice { background: #fff4d6; border: 2px solid #e0a800; border-radius: .5rem;
          padding: .75rem 1rem; margin: 0 0 1rem; font-weight: 600; }
.refer { background: #fff4e5; border: 2px solid #b45309; border-radius: .5rem;
  padding: .6rem 1rem; margin: 1rem 0; }
.error { background: #fde8e8; border: 2px solid #c81e1e; border-radius: .5rem;
         padding: .75rem 1rem; margin: 1rem 0; color: #8a1111; }
.dropzone { display: block; border: 3px dashed #8894a8; border-radius: .75rem; padding: 2rem;
            text-align: center; background: #fff; cursor: pointer; }
.dropzone.over { border-color: #1a56db; background: #eef4ff; }
.dropzone input { margin-top: .75rem; }
button { margin-top: .75rem; font-size: 1rem; padding: .5rem 1.25rem; border-radius: .4rem;
         border: 0; background: #1a56db; color: #fff; cursor: pointer; }
.results { display: grid; grid-template-columns: minmax(16rem, 24rem) 1fr; gap: 1.5rem;
           margin-top: 1.5rem; align-items: start; }
@media (max-width: 50rem) { .results { grid-template-columns: 1fr; } }
h2 { font-size: 1.15rem; margin: 0 0 .5rem; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #dde; }
.barcell { width: 7rem; }
.barcell meter { width: 100%; height: .8rem; }
figure { margin: 0; background: #fff; padding: .5rem; border-radius: .5rem; }
figure img { display: block; width: 300px; max-width: 100%; height: auto; }
figcaption { font-size: .85rem; color: #556; max-width: 300px; margin-top: .4rem; }
.images { display: flex; gap: 1rem; flex-wrap: wrap; }
.model { font-size: .85rem; color: #556; margin-top: 2rem; }
"""

_JS = """
(function () {
  var form = document.getElementById("upload-form");
  var input = document.getElementById("file-input");
  var zone = document.getElementById("dropzone");
  var status = document.getElementById("status");
  function send() {
    if (!input.files || !input.files.length) { return; }
    status.textContent = "Analysing " + input.files[0].name + "\u2026";
    // The prototype's submit, so that no form control named "submit" can shadow it.
    HTMLFormElement.prototype.submit.call(form);
  }
  input.addEventListener("change", send);
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault(); zone.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      send();
    }
  });
})();
"""


def _set_paragraphs(extra: dict[str, Any]) -> list[str]:
    if "prediction_set" not in extra:
        return []
    e = html.escape
    members = ", ".join(e(label) for label in extra["prediction_set"])
    parts = [f"<p class='prediction-set' id='prediction-set'>With {100 * extra['coverage']:.0f} % "
             f"coverage the condition is one of: <strong>{members}</strong> (a conformal "
             "prediction set: it holds the true condition for at least that share of images "
             "like the model's calibration images).</p>"]
    if extra["refer"]:
        parts.append("<div class='refer' id='referral' role='alert'><strong>Uncertain: "
                     "refer.</strong> The model cannot narrow this image down to one condition "
                     "with confidence; a dermatologist should examine the lesion.</div>")
    return parts


def _page(summary: dict[str, Any], *, max_upload_bytes: int,
          max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, analysis: Analysis | None = None,
          error: str | None = None) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>skinestimator: skin-lesion classifier (research tool)</title>",
        "<link rel='stylesheet' href='/static/app.css'></head><body><main>",
        "<h1>skinestimator</h1>",
        "<p class='sub'>Skin-lesion image classifier with Grad-CAM explanations</p>",
        f"<div class='notice' id='notice' role='note'>{e(NOTICE)}</div>",
        "<form id='upload-form' method='post' action='/' enctype='multipart/form-data'>",
        "<label class='dropzone' id='dropzone'>",
        "<strong>Drag a photo of a skin lesion here</strong><br>or choose a file:<br>",
        "<input type='file' id='file-input' name='image' "
        "accept='image/jpeg,image/png,image/webp,image/tiff,image/bmp,image/gif'>",
        f"<br><small>{_ACCEPTED}, up to {_file_size(max_upload_bytes)} and "
        f"{_megapixels(max_image_pixels)} megapixels</small></label>",
        "<button type='submit' id='analyse-button'>Analyse</button> <span id='status'></span>",
        "</form>",
    ]
    if error:
        parts.append(f"<div class='error' id='error' role='alert'>{e(error)}</div>")
    if analysis is not None:
        parts.append("<section class='results' id='results'><div>")
        parts.append(f"<h2>Top {len(analysis.predictions)} for {e(analysis.filename)}</h2>")
        parts.append("<table id='predictions'><thead><tr><th>#</th><th>Condition</th>"
                     "<th>Probability</th><th></th></tr></thead><tbody>")
        for rank, (label, p) in enumerate(analysis.predictions, start=1):
            parts.append(
                f"<tr class='prediction'><td>{rank}</td><td class='label'>{e(label)}</td>"
                f"<td class='probability'>{100 * p:.1f}%</td>"
                # A <meter> rather than a styled <div>: the page's CSP forbids inline styles.
                f"<td class='barcell'><meter min='0' max='1' value='{p:.4f}'>{100 * p:.1f}%"
                "</meter></td></tr>"
            )
        parts.append("</tbody></table>")
        parts.extend(_set_paragraphs(analysis.extra))
        parts.append(
            "<p class='sub'>Probabilities say how the model ranks the conditions it was "
            "trained on; a condition it never saw cannot appear.</p></div>"
        )
        parts.append("<div class='images'>")
        parts.append(
            "<figure><img id='input-image' alt='uploaded image as the model saw it' "
            f"src='data:image/png;base64,{base64.b64encode(analysis.input_png).decode()}'>"
            "<figcaption>Input, as the model saw it</figcaption></figure>"
        )
        parts.append(
            "<figure><img id='overlay' alt='Grad-CAM heatmap overlay' "
            f"src='data:image/png;base64,{base64.b64encode(analysis.overlay_png).decode()}'>"
            f"<figcaption>Grad-CAM: red regions most supported "
            f"\u201c{e(analysis.explained_class)}\u201d. It shows what the model used, not "
            "what is medically relevant.</figcaption></figure>"
        )
        parts.append("</div></section>")
    metric = summary.get("balanced_accuracy")
    parts.append(
        "<p class='model' id='model-info'>Model: "
        f"{e(str(summary['backbone']))} at {e(summary['image_size'])} px; "
        f"classes: {e(', '.join(summary['classes']))}"
        + (f"; training data: {summary['n_train']} images" if "n_train" in summary else "")
        + (f"; validation balanced accuracy {metric:.3f}" if metric is not None else "")
        + ".</p>"
    )
    parts.append("<script src='/static/app.js'></script></main></body></html>")
    return "".join(parts)


# ----------------------------------------------------------------------------------------------
# app


def create_app(
    clf,
    *,
    top_k: int = 3,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    coverage: float | None = 0.9,
    referral=None,
):
    """Build the Starlette app of the upload page for a fitted classifier.

    Routes: ``GET /`` the page; ``POST /`` a form upload (field ``image``) answered with the
    page showing the top-k conditions and the Grad-CAM overlay, or a clear message for a bad
    upload; ``POST /api/predict`` the same as JSON; ``GET /healthz``.

    Parameters
    ----------
    clf : SkinLesionClassifier
        A fitted classifier (e.g. from :func:`skinestimator.deploy.load_model`).
    top_k : int, default=3
        Number of conditions listed.
    max_upload_bytes : int, default=10_000_000
        Larger uploads (in bytes; the page shows decimal units, 1 MB = 10⁶ bytes) are refused
        with status 413 before being read. A positive integer: there is no "no limit" setting.
    max_image_pixels : int, default=50_000_000
        Images with more pixels (width × height) are refused with status 413 and a message
        saying so, judged from the file's header before any pixel is decoded: a small file can
        declare a huge image (a decompression bomb). Pillow's own limit
        (2 × ``PIL.Image.MAX_IMAGE_PIXELS``, about 179 megapixels) still applies above it.
    coverage : float in (0, 1) or None, default=0.9
        The page (and ``/api/predict``) shows each image's conformal prediction set at this
        coverage, when the model holds calibration scores; None shows none.
    referral : skinestimator.uncertainty.Referral or None, default=None
        When an image is flagged "uncertain: refer" (None: ``Referral()``, more than one
        condition in the set or a top probability under 0.5).

    Returns
    -------
    app : starlette.applications.Starlette

    Raises
    ------
    ValueError
        If ``clf`` is not fitted, or ``max_upload_bytes`` or ``max_image_pixels`` is not a
        positive integer.

    Examples
    --------
    >>> from starlette.testclient import TestClient
    >>> from skinestimator.deploy import load_model
    >>> from skinestimator.web import create_app
    >>> client = TestClient(create_app(load_model("model.skin")))  # doctest: +SKIP
    >>> "not a diagnosis" in client.get("/").text  # doctest: +SKIP
    True
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    if not hasattr(clf, "classes_"):
        raise ValueError("create_app needs a fitted classifier")
    # Checked here: a float or None used to be accepted and then failed every request.
    for name, value in (("max_upload_bytes", max_upload_bytes),
                        ("max_image_pixels", max_image_pixels)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    max_upload_bytes = int(max_upload_bytes)
    if coverage is not None:
        from skinestimator.uncertainty._conformal import check_coverage

        check_coverage(coverage)
    analyse = _Analyser(clf, top_k, int(max_image_pixels), coverage, referral)
    summary = _model_summary(clf)
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
    }

    def page(status: int = 200, **kwargs) -> HTMLResponse:
        return HTMLResponse(
            _page(summary, max_upload_bytes=max_upload_bytes,
                  max_image_pixels=analyse.max_image_pixels, **kwargs),
            status_code=status, headers=headers,
        )

    async def read_upload(request) -> tuple[bytes, str]:
        length = request.headers.get("content-length")
        if length is None:
            raise UploadError("The upload did not say how large it is; please try again.", 411)
        try:
            n_bytes = int(length)
        except ValueError as exc:
            raise UploadError("The upload's size header is invalid.", 400) from exc
        # Multipart framing adds a few hundred bytes around the file itself.
        if n_bytes > max_upload_bytes + 64 * 1024:
            raise UploadError(
                f"The file is too large ({_file_size(n_bytes)}); the limit is "
                f"{_file_size(max_upload_bytes)}.", 413,
            )
        try:
            form = await request.form(max_files=1, max_fields=4)
        except HTTPException as exc:
            raise UploadError(f"The upload could not be read ({exc.detail}).", 400) from exc
        upload = form.get("image")
        if upload is None or isinstance(upload, str) or not getattr(upload, "filename", None):
            raise UploadError("Please choose a photo to upload first.", 400)
        data = await upload.read(max_upload_bytes + 1)
        await upload.close()
        if len(data) > max_upload_bytes:
            raise UploadError(
                f"The file is too large; the limit is {_file_size(max_upload_bytes)}.", 413
            )
        if not data:
            raise UploadError(f"'{upload.filename}' is empty.", 400)
        return data, Path(upload.filename).name[:200]

    async def index(request):
        return page()

    async def analysed(request) -> Analysis:
        data, name = await read_upload(request)
        try:
            return await run_in_threadpool(analyse, data, name)
        except UploadError:
            raise
        except Exception as exc:
            # A bug or an exotic file must cost one request, not the server: log it for the
            # operator and tell the user in the page.
            traceback.print_exc(file=sys.stderr)
            raise UploadError(
                f"Something went wrong while analysing '{name}' ({type(exc).__name__}); "
                "please try another photo.", 500,
            ) from exc

    async def upload_page(request):
        try:
            analysis = await analysed(request)
        except UploadError as exc:
            return page(exc.status_code, error=exc.message)
        return page(analysis=analysis)

    async def api_predict(request):
        try:
            analysis = await analysed(request)
        except UploadError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status_code,
                                headers=headers)
        return JSONResponse(analysis.to_json(), headers=headers)

    async def css(request):
        return Response(_CSS, media_type="text/css", headers=headers)

    async def js(request):
        return Response(_JS, media_type="application/javascript", headers=headers)

    async def healthz(request):
        return PlainTextResponse("ok")

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/", upload_page, methods=["POST"]),
        Route("/api/predict", api_predict, methods=["POST"]),
        Route("/static/app.css", css),
        Route("/static/app.js", js),
        Route("/healthz", healthz),
    ]
    return Starlette(routes=routes)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    model,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    top_k: int = 3,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    log_level: str = "warning",
) -> None:
    """Serve the upload page until interrupted (Ctrl+C).

    Parameters
    ----------
    model : SkinLesionClassifier or path
        A fitted classifier or a model file written by :func:`skinestimator.deploy.save_model`.
    host : str, default="127.0.0.1"
        Interface to bind. The default is reachable from this computer only; binding another
        address exposes an unauthenticated medical-image upload page to the network.
    port : int, default=8000
    top_k : int, default=3
    max_upload_bytes : int, default=10_000_000
        Larger uploads are refused (see :func:`create_app`).
    max_image_pixels : int, default=50_000_000
        Images with more pixels are refused (see :func:`create_app`).
    log_level : str, default="warning"
        uvicorn's log level.

    Examples
    --------
    >>> from skinestimator.web import serve
    >>> serve("model.skin", port=8000)  # doctest: +SKIP
    """
    import uvicorn

    if isinstance(model, (str, os.PathLike)):
        from skinestimator.deploy import load_model

        model = load_model(model)
    app = create_app(model, top_k=top_k, max_upload_bytes=max_upload_bytes,
                     max_image_pixels=max_image_pixels)
    if not _is_loopback(host):
        print(
            f"warning: binding {host} makes the page reachable from other computers; it has "
            "no login and is a research tool, not a diagnosis",
            file=sys.stderr,
        )
    shown = f"[{host}]" if ":" in host else host
    print(f"skinestimator: serving on http://{shown}:{port}/ (research tool, not a diagnosis)."
          " Press Ctrl+C to stop.", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
