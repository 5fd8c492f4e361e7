"""Exit codes and the one exception type the command line turns into a one-line message."""

from __future__ import annotations

# Exit codes, documented in docs/command_line.md. 2 is argparse's own code for a bad
# command line, so option values we reject ourselves use it too.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_MODEL = 4
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A user mistake or environment problem, reported as one line without a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.code = code


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (tracebacks and multi-line messages scare users)."""
    text = str(exc)
    if "Original Traceback" in text:
        # Errors raised in DataLoader worker processes arrive wrapped in the worker's
        # traceback; the user needs only its last line, without the exception's module path.
        from skinestimator.data import worker_original_message

        text = worker_original_message(text)
    text = " ".join(text.split())
    if isinstance(exc, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    return text or type(exc).__name__
