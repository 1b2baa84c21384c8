"""Secrets: params name where a secret lives; labkit resolves it and masks it everywhere it writes.

A resolved value is registered in a process-wide set; ``redact`` replaces every
registered value in any text or JSON-like structure with ``*****``. Everything
labkit writes (display helpers, logs, results.json, the report) goes through it.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from labkit.environment import secret_spool
from labkit.errors import ConfigError
from labkit.files import read_regular

__all__ = [
    "MASK",
    "RedactingFilter",
    "Secret",
    "SecretRef",
    "redact",
    "register",
    "register_spooled",
    "registered_count",
    "resolve",
    "written_forms",
]

MASK = "*****"
# A password, token or key file: a few KB at most (a TLS key chain fits with room to spare).
_MAX_SECRET_FILE = 64 * 1024
_MINIMUM_LENGTH = 4  # shorter values would mask ordinary words; refuse them as secrets instead
_lock = threading.Lock()
_values: set[str] = set()
_forms: set[str] = set()  # every registered value as written raw, in JSON and in HTML


class Secret:
    """A secret value that prints as ``*****``; ``reveal()`` is the only way to the text."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "inline") -> None:
        if len(value) < _MINIMUM_LENGTH:
            raise ConfigError(
                f"secret from {source} is {len(value)} characters long; "
                f"use at least {_MINIMUM_LENGTH} so it can be masked reliably"
            )
        self._value = value
        self.source = source
        register(value)

    def reveal(self) -> str:
        """The secret itself: pass it to the system that needs it, never to a printer."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK} from {self.source})"

    def __str__(self) -> str:
        return MASK

    def _repr_html_(self) -> str:
        return f"<code>{MASK}</code>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretRef(BaseModel):
    """Where a secret lives: exactly one of an environment variable, a file, a Kubernetes secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None
    kubernetes: str | None = None  # "namespace/name/key"

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [name for name in ("env", "file", "kubernetes") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "a secret reference names exactly one of env, file or kubernetes "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.kubernetes is not None and self.kubernetes.count("/") != 2:
            raise ValueError("kubernetes secret reference is 'namespace/name/key'")
        return self

    @property
    def kind(self) -> Literal["env", "file", "kubernetes"]:
        """Which store the reference points into."""
        if self.env:
            return "env"
        if self.file:
            return "file"
        return "kubernetes"

    def describe(self) -> str:
        """A printable location (never the value)."""
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"file {self.file}"
        return f"Kubernetes secret {self.kubernetes}"


def resolve(ref: SecretRef, base_dir: Path | None = None) -> Secret:
    """Read a secret from where its reference points; a missing one is a ConfigError naming it."""
    if ref.env:
        value = os.environ.get(ref.env)
        if value is None:
            raise ConfigError(
                f"secret {ref.describe()} is not set; export it before running labkit"
            )
        return Secret(value, ref.describe())
    if ref.file:
        path = ref.file.expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        raw = read_regular(
            path,
            f"secret file {path}",
            kind="a secret file",
            limit=_MAX_SECRET_FILE,
            hint="create it or fix the path",
        )
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(
                f"secret file {path} is not UTF-8 text; write the secret as one line of text"
            ) from None
        return Secret(value, ref.describe())
    raise ConfigError(
        f"{ref.describe()} needs a Kubernetes API to resolve; use labkit.cluster for that lab"
    )


def register(value: str) -> None:
    """Mask ``value`` wherever labkit writes from now on.

    Under ``labkit run`` a notebook's kernel also appends each new value to the
    runner's spool file (mode 600, outside the run folder), so secrets that only
    the kernel learns (a token read from a node) are masked in the run's files too.
    """
    if len(value) < _MINIMUM_LENGTH:
        return
    with _lock:
        new = value not in _values
        _values.add(value)
        _forms.update(written_forms(value))
    spool = secret_spool()
    if new and spool:
        descriptor = os.open(spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(value) + "\n")


def written_forms(value: str) -> set[str]:
    """``value`` as files can hold it: raw, JSON-escaped (a notebook's .ipynb, results.json),
    HTML-escaped (report.html, text/html outputs) and both (HTML inside a notebook)."""
    forms = {value}
    for text in (value, html.escape(value), html.escape(value, quote=False)):
        forms.add(text)
        forms.add(json.dumps(text)[1:-1])
        forms.add(json.dumps(text, ensure_ascii=False)[1:-1])
    return forms


def register_spooled(spool: Path) -> int:
    """Register every value a kernel spooled; returns how many were read."""
    try:
        lines = spool.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    for line in lines:
        if line.strip():
            register(json.loads(line))
    return len(lines)


def registered_count() -> int:
    """How many distinct secret values are being masked."""
    with _lock:
        return len(_values)


def _mask_text(text: str, values: Iterable[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact(data: Any) -> Any:
    """Return ``data`` with every registered secret value replaced by ``*****``, recursively."""
    with _lock:
        values = sorted(_forms, key=len, reverse=True)  # longest first: no partial leftovers
    if not values:
        return data
    return _redact(data, values)


def _redact(data: Any, values: list[str]) -> Any:
    if isinstance(data, str):
        return _mask_text(data, values)
    if isinstance(data, Secret):
        return MASK
    if isinstance(data, dict):
        return {_redact(key, values): _redact(item, values) for key, item in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(_redact(item, values) for item in data)
    return data


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True
