"""Errors a user can fix: reported as one line on stderr with exit code 2, no traceback."""
import sys


class UsageError(ValueError):
    """Bad input (flag, path, checkpoint, data); the message says what to do."""


def exit_with(message, code=2):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
