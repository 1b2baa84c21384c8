"""The one exception root and its few children; every message says what, where and what to try."""

from __future__ import annotations

__all__ = [
    "ApplyConflict",
    "CheckFailed",
    "ClusterError",
    "CommandError",
    "ConfigError",
    "ConnectError",
    "LabkitError",
    "NotAllowed",
    "NotFound",
    "QueryError",
    "SandboxDown",
    "StepError",
    "WaitTimeout",
]


class LabkitError(Exception):
    """Root of every error labkit raises on purpose; the CLI prints these without a traceback.

    ``exit_code`` is the command line's status for it (2: labkit or what it drives broke;
    1: a check failed), never a remote command's status (``CommandError.remote_status``).
    """

    exit_code = 2


class ConfigError(LabkitError):
    """A params file (or a value derived from one) is wrong; ``problems`` lists each field."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        detail = "".join(f"\n  - {problem}" for problem in self.problems)
        super().__init__(message + detail)


class ConnectError(LabkitError):
    """A host, port or API could not be reached, or refused us."""


class SandboxDown(ConnectError):
    """A sandbox address was about to be contacted while the sandbox's bridge does not carry it."""


class CommandError(LabkitError):
    """A command ran and failed: names the host, the argv, the exit status and the stderr tail.

    The command's own status is ``remote_status`` (-1: it never exited); the command line
    still exits 2 for it, as for anything else that broke.
    """

    remote_status: int | None

    def __init__(
        self, host: str, argv: list[str], remote_status: int, stderr: str, hint: str = ""
    ) -> None:
        self.host = host
        self.argv = argv
        self.remote_status = remote_status
        self.stderr = stderr
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:] if line.strip())
        message = f"{host}: {' '.join(argv)!r} exited {remote_status}"
        if tail:
            message += f" ({tail})"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class StepError(LabkitError):
    """A step could not reach its desired state, or left changes behind after apply."""


class CheckFailed(LabkitError):
    """Raised by code that insists on a passing check (``require``); the CLI exits 1."""

    exit_code = 1


class WaitTimeout(LabkitError):
    """Something we waited for did not happen before its deadline."""


class NotAllowed(LabkitError):
    """An address is not in the lab's allow-list, or an action needs a confirmation it lacks."""


class ClusterError(LabkitError):
    """The Kubernetes API refused or failed a request: names the verb, the object, what to try."""


class NotFound(ClusterError):
    """The object (or its kind) does not exist in the cluster."""


class ApplyConflict(ClusterError):
    """Server-side apply would take fields another field manager owns; ``conflicts`` lists them.

    Each entry is (field, manager), e.g. ('.spec.replicas', 'kubectl-edit').
    """

    def __init__(self, message: str, conflicts: list[tuple[str, str]]) -> None:
        self.conflicts = conflicts
        super().__init__(message)


class QueryError(LabkitError):
    """An API answered, but not with what was asked: a rejected query, an unexpected shape."""
