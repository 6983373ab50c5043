"""Errors a user can fix: reported as one line on stderr with exit code 2, no traceback."""


class UsageError(ValueError):
    """Bad input (flag, path, checkpoint, data); the message says what to do."""
