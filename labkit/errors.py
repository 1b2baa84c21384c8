"""The one exception root and its few children; every message says what, where and what to try."""

from __future__ import annotations

__all__ = [
    "CheckFailed",
    "CommandError",
    "ConfigError",
    "ConnectError",
    "LabkitError",
    "NotAllowed",
    "QueryError",
    "StepError",
    "WaitTimeout",
]


class LabkitError(Exception):
    """Root of every error labkit raises on purpose; the CLI prints these without a traceback."""

    exit_code = 2


class ConfigError(LabkitError):
    """A params file (or a value derived from one) is wrong; ``problems`` lists each field."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        detail = "".join(f"\n  - {problem}" for problem in self.problems)
        super().__init__(message + detail)


class ConnectError(LabkitError):
    """A host, port or API could not be reached, or refused us."""


class CommandError(LabkitError):
    """A command ran and failed: names the host, the argv, the exit code and the stderr tail."""

    def __init__(
        self, host: str, argv: list[str], exit_code: int, stderr: str, hint: str = ""
    ) -> None:
        self.host = host
        self.argv = argv
        self.exit_code = exit_code
        self.stderr = stderr
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:] if line.strip())
        message = f"{host}: {' '.join(argv)!r} exited {exit_code}"
        if tail:
            message += f" ({tail})"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class StepError(LabkitError):
    """A step could not reach its desired state, or left changes behind after apply."""


class CheckFailed(LabkitError):
    """Raised by code that insists on a passing check (``require``)."""


class WaitTimeout(LabkitError):
    """Something we waited for did not happen before its deadline."""


class NotAllowed(LabkitError):
    """An address is not in the lab's allow-list, or an action needs a confirmation it lacks."""


class QueryError(LabkitError):
    """An API answered, but not with what was asked: a rejected query, an unexpected shape."""
