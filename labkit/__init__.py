"""labkit: the helper package behind the URL-shortener lab-book."""

from __future__ import annotations

from labkit.errors import (
    CheckFailed,
    CommandError,
    ConfigError,
    ConnectError,
    LabkitError,
    NotAllowed,
    StepError,
    WaitTimeout,
)
from labkit.params import Lab, load_lab

__version__ = "0.1.0"

__all__ = [
    "CheckFailed",
    "CommandError",
    "ConfigError",
    "ConnectError",
    "Lab",
    "LabkitError",
    "NotAllowed",
    "StepError",
    "WaitTimeout",
    "__version__",
    "load_lab",
]
