"""What labkit sets up inside a Jupyter kernel: short error messages and progress lines.

A ``LabkitError`` is a mistake a person can act on (the sandbox is down, a params
field is wrong): in a notebook it shows as one short message saying what to try,
not as a traceback through labkit's internals. Any other exception is a bug and
keeps IPython's full traceback. Long cells report progress: headless (under
``labkit run``) as marked lines on the kernel's stderr, which the runner streams to
its terminal; interactively as one line updated in place.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from labkit import environment
from labkit.errors import LabkitError

__all__ = ["PROGRESS_MARK", "install", "progress", "short_error"]

PROGRESS_MARK = "[labkit progress] "  # the runner passes kernel stderr lines with this mark


def short_error(error: BaseException) -> str:
    """``Kind: message`` of a LabkitError, the message already saying what to try."""
    return f"{type(error).__name__}: {error}"


def _show_labkit_error(
    shell: Any,
    kind: type[BaseException],
    error: BaseException,
    traceback: TracebackType | None,
    tb_offset: int | None = None,
) -> list[str]:
    """IPython custom exception handler: an error output with the message as its only line."""
    if not isinstance(error, LabkitError):  # set_custom_exc matched it, but be sure
        shell.showtraceback((kind, error, traceback), tb_offset=tb_offset)
        return []
    from labkit.secrets import redact  # noqa: PLC0415 - secrets imports params (heavier)

    lines = [f"\x1b[0;31m{type(error).__name__}\x1b[0m: {redact(str(error))}"]
    # _showtraceback is how IPython's own handlers emit an error output (ename, evalue and
    # these lines as the "traceback"), so the cell still fails and `labkit run` and nbval
    # see the error, but the reader sees only the message.
    shell._showtraceback(kind, error, lines)
    return lines


def install() -> bool:
    """Register the short LabkitError display in the running IPython shell; False outside one.

    Idempotent; registering again replaces the handler with itself.
    """
    try:
        from IPython import get_ipython  # noqa: PLC0415 - IPython only exists in notebooks
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((LabkitError,), _show_labkit_error)
    return True


def _labelled(label: str, message: str) -> str:
    """``label`` before ``message`` unless the message already starts with it."""
    return message if message.startswith(label) else f"{label}{message}"


def progress(prefix: str = "") -> Callable[[str], None]:
    """A sink for progress messages of a long cell (``prefix`` names what is running).

    Headless: a marked line on stderr per message (``labkit run`` prints it in its own
    output). Interactive: one display line, replaced by each new message.
    """
    label = f"{prefix}: " if prefix else ""
    if environment.headless():

        def to_runner(message: str) -> None:
            for line in message.splitlines():
                sys.stderr.write(f"{PROGRESS_MARK}{_labelled(label, line)}\n")
            sys.stderr.flush()

        return to_runner
    try:
        from IPython.display import display  # noqa: PLC0415
    except ImportError:
        return lambda message: None
    handle: Any = None

    def in_place(message: str) -> None:
        nonlocal handle
        text = {"text/plain": _labelled(label, message)}
        if handle is None:
            handle = display(text, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            handle.update(text, raw=True)

    return in_place
