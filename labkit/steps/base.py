"""Step, Diff, Change: a desired state that reads the node and says what it would change.

A Step's ``diff`` only reads (through labkit.facts). It returns a Diff that is
either nothing to do (with why), some Changes (each an argv list, plus file
content on stdin or a file to upload first), or "cannot" (with why: this node
cannot show or reach that state, e.g. a sandbox node shares the host's kernel,
so labkit will not load modules or turn swap off there). Applying a Change is
the only place anything is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from labkit.errors import CommandError, StepError
from labkit.facts import RemoteHost, quote
from labkit.params import Lab, Node
from labkit.secrets import Secret, redact

__all__ = [
    "Change",
    "Diff",
    "DiffKind",
    "Evidence",
    "Step",
    "Target",
    "read_yaml_mapping",
    "write_file",
]


@dataclass(frozen=True)
class Change:
    """One thing to change on a node: an argv, optionally fed ``stdin`` or preceded by an upload.

    ``stdin`` carries file content (which may hold a secret): it never appears in
    evidence, only its size. ``local`` changes write a file on this machine instead.
    """

    summary: str
    before: str
    after: str
    argv: tuple[str, ...] = ()
    stdin: str | Secret | None = field(default=None, repr=False)  # may hold a secret
    upload: Path | None = None  # local file sent to ``argv``'s source path first
    upload_to: str = ""
    local: Callable[[], None] | None = field(default=None, compare=False)
    timeout_s: float | None = None

    def command(self) -> str:
        """The command as evidence shows it (no stdin content)."""
        if self.local is not None:
            return f"(local) {self.summary}"
        text = quote(self.argv)
        if self.upload is not None:
            text = f"upload {self.upload} -> {self.upload_to}; {text}"
        if self.stdin is not None:
            size = len(self.stdin.reveal() if isinstance(self.stdin, Secret) else self.stdin)
            text += f" < ({size} bytes)"
        return text

    def apply(self, host: RemoteHost) -> tuple[int, float]:
        """Make the change on ``host``; returns (exit code, seconds). Raises CommandError."""
        started = time.perf_counter()
        if self.local is not None:
            self.local()
            return 0, time.perf_counter() - started
        if self.upload is not None:
            host.put(self.upload, self.upload_to, 0o600)
        data = self.stdin.reveal() if isinstance(self.stdin, Secret) else self.stdin
        result = host.run(list(self.argv), stdin=data, timeout_s=self.timeout_s, check=False)
        if result.exit_code != 0:
            raise CommandError(host.name, list(self.argv), result.exit_code, result.stderr)
        return result.exit_code, time.perf_counter() - started


def read_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """``text`` (a YAML file at ``where``, e.g. ``node:/path``) parsed as a mapping.

    A broken or non-mapping file is a StepError naming ``where`` and the line, never quoting
    the file: it may hold a token.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise StepError(
            f"{where} is not valid YAML{line}: fix or remove it, then plan again"
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise StepError(
            f"{where} holds a YAML {type(document).__name__}, not a mapping of settings: "
            "fix or remove it, then plan again"
        )
    return document


def write_file(
    path: str, content: str | Secret, before: str, after: str, mode: int = 0o644
) -> Change:
    """A Change that writes ``content`` to ``path`` (parents created) through stdin, not argv."""
    return Change(
        summary=f"write {path}",
        before=before,
        after=after,
        argv=("install", "-D", "-m", f"{mode:04o}", "/dev/stdin", path),
        stdin=content,
    )


class DiffKind(StrEnum):
    """What a step concluded about a node."""

    NONE = "none"
    CHANGE = "change"
    CANNOT = "cannot"


@dataclass(frozen=True)
class Diff:
    """A step's verdict on one node: nothing to do, these changes, or cannot (with why)."""

    kind: DiffKind
    reason: str = ""
    changes: tuple[Change, ...] = ()
    # Parts of a changing step that cannot be done here (why), shown beside its changes.
    cannot_parts: tuple[str, ...] = ()

    @classmethod
    def none(cls, reason: str) -> Diff:
        """Already in the desired state; ``reason`` says what was seen."""
        return cls(DiffKind.NONE, reason)

    @classmethod
    def change(cls, *changes: Change) -> Diff:
        """These changes would bring the node to the desired state."""
        return cls(DiffKind.CHANGE, "; ".join(c.summary for c in changes), tuple(changes))

    @classmethod
    def cannot(cls, reason: str) -> Diff:
        """This node cannot reach or show the state here; ``reason`` says why (not a change)."""
        return cls(DiffKind.CANNOT, reason)

    @classmethod
    def merge(cls, *diffs: Diff) -> Diff:
        """Combine parts of one step: changes win, then cannot, else none (reasons joined).

        A changing step keeps the reasons of its parts that cannot be done, in
        ``cannot_parts``: the plan shows them beside the changes.
        """
        changes = tuple(c for d in diffs for c in d.changes)
        cannot = [d.reason for d in diffs if d.kind is DiffKind.CANNOT]
        if changes:
            summary = "; ".join(c.summary for c in changes)
            return cls(DiffKind.CHANGE, summary, changes, tuple(cannot))
        if cannot:
            reasons = cannot + [d.reason for d in diffs if d.kind is DiffKind.NONE]
            return cls(DiffKind.CANNOT, "; ".join(reasons))
        return cls(DiffKind.NONE, "; ".join(d.reason for d in diffs))


@dataclass
class Target:
    """What a step sees: the node, its Host, the lab, and state shared by the whole plan."""

    node: Node
    host: RemoteHost
    lab: Lab
    shared: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, RemoteHost] = field(default_factory=dict)

    @property
    def shares_host_kernel(self) -> bool:
        """True on the sandbox: its nodes are namespaces on this machine's kernel."""
        return self.lab.kind == "sandbox"


class Step:
    """A desired state of a node; subclasses implement ``diff`` (read-only)."""

    name = "step"

    def diff(self, target: Target) -> Diff:
        """What would change on ``target`` (never writes)."""
        raise NotImplementedError

    def applies_to(self, node: Node, lab: Lab) -> bool:
        """Whether this step concerns ``node`` at all."""
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


@dataclass(frozen=True)
class Evidence:
    """The record of one change: node, step, before -> after, command, exit code."""

    node: str
    step: str
    change: str
    before: str
    after: str
    argv: str
    applied: bool
    exit_code: int | None
    duration_s: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, redacted (the results.json ``plans`` entry)."""
        data: dict[str, Any] = redact(self.__dict__.copy())
        return data
