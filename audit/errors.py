"""Errors that end a command with a clear message and a known exit code."""


class AuditError(Exception):
    """A problem with the user's input or project: printed without a traceback.

    ``exit_code`` 2 means usage or project error, as for pytest and coverage.py.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(AuditError):
    """A bad ``[tool.audit]`` table: unknown key, wrong type, unreadable file."""
