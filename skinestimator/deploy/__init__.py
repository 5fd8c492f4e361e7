"""Shipping a model: safe single-file model files and ONNX export.

``save_model`` / ``load_model`` write and read one file holding safetensors weights and a JSON
model card, checked by SHA-256; nothing is unpickled. Pickle / joblib also work on a fitted
classifier but can execute code when loaded: use them only for files from a source you trust.
"""

from ._model_file import ModelFileError, load_model, read_model_card, save_model
from ._onnx import export_onnx

__all__ = ["ModelFileError", "export_onnx", "load_model", "read_model_card", "save_model"]
