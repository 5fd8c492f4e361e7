"""A local web page for the classifier: upload a photo, see top-k conditions and Grad-CAM."""

from ._app import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, NOTICE, create_app, serve

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "DEFAULT_MAX_UPLOAD_BYTES", "NOTICE", "create_app", "serve"]
