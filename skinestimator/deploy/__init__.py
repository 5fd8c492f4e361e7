"""Shipping a model: safe single-file model files and ONNX export.

``save_model`` / ``load_model`` write and read one file holding safetensors weights and a JSON
model card; loading never unpickles or runs code from the file. A SHA-256 digest in the file
detects corruption and accidental modification; it is not a signature (whoever edits a file can
recompute it), so to trust a file from someone else compare its ``sha256`` (shown by
``skinestimator info``) with theirs through a channel you trust. Pickle / joblib also work on a
fitted classifier but can execute code when loaded: use them only for files from a source you
trust.
"""

from ._model_file import ModelFileError, load_model, read_model_card, save_model
from ._onnx import export_onnx

__all__ = ["ModelFileError", "export_onnx", "load_model", "read_model_card", "save_model"]
