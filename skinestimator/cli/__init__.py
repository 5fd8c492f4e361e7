"""The ``skinestimator`` command line: train, evaluate, predict, explain, serve, export, demo."""

from ._errors import CLIError
from ._main import build_parser, main

__all__ = ["CLIError", "build_parser", "main"]
