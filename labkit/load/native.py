"""The engine's hot path compiled by mypyc, used only when built from the sources beside it.

``pip install`` (``setup.py``) compiles ``client`` and ``worker`` with mypyc when it can
(a missing compiler leaves pure Python, which behaves the same, only slower) and writes
``_native.json`` with the SHA-256 of each compiled source. Python imports a compiled
module in preference to its ``.py``, so a source edited or checked out since the build
would silently run old code. ``prefer_fresh()``, run by ``labkit.load`` before anything
imports the hot path, loads the ``.py`` sources instead whenever the compiled copies
are not of these very sources, and ``HOT_PATH`` says which runs and why (it is in
every load result's ``generator``). ``pip install -e .`` (or ``make test``) rebuilds.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path

__all__ = [
    "COMPILED",
    "HOT_PATH",
    "MANIFEST",
    "compiled_state",
    "prefer_fresh",
    "source_digests",
]

COMPILED = ("client", "worker")  # modules of labkit.load that the build compiles
MANIFEST = "_native.json"
HERE = Path(__file__).resolve().parent
PACKAGE = __name__.rpartition(".")[0]
_REBUILD = "rebuild: pip install -e ."
HOT_PATH = "python (not checked yet)"


def source_digests(directory: Path) -> dict[str, str]:
    """SHA-256 of each compiled module's source, as the build records it."""
    return {
        f"{name}.py": hashlib.sha256((directory / f"{name}.py").read_bytes()).hexdigest()
        for name in COMPILED
    }


def _compiled_files(directory: Path, name: str) -> list[Path]:
    return [
        directory / f"{name}{suffix}"
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (directory / f"{name}{suffix}").exists()
    ]


def compiled_state(directory: Path) -> tuple[bool, str]:
    """(use the compiled modules?, why not): compiled, complete, and of these sources."""
    present = [name for name in COMPILED if _compiled_files(directory, name)]
    if not present:
        return False, "not compiled (no C compiler or mypyc at install time)"
    if len(present) < len(COMPILED):
        return False, f"only {', '.join(present)} compiled; {_REBUILD}"
    try:
        recorded = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, f"compiled modules without a readable {MANIFEST}; {_REBUILD}"
    current = source_digests(directory)
    changed = [name for name, digest in current.items() if recorded.get(name) != digest]
    if changed:
        return False, (
            f"{', '.join(changed)} changed since it was compiled (stale copy ignored); {_REBUILD}"
        )
    return True, ""


def _load_sources() -> None:
    """Import the ``.py`` sources under the modules' own names, ahead of the compiled ones."""
    package = sys.modules[PACKAGE]
    for name in COMPILED:  # client first: worker imports it
        full = f"{PACKAGE}.{name}"
        spec = importlib.util.spec_from_file_location(full, HERE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        setattr(package, name, module)


def prefer_fresh() -> str:
    """Choose the compiled hot path or the sources, once per process; returns ``HOT_PATH``."""
    global HOT_PATH  # noqa: PLW0603 - decided once, before the hot path is imported
    use, why = compiled_state(HERE)
    if use:
        try:
            for name in COMPILED:
                importlib.import_module(f"{__name__.rpartition('.')[0]}.{name}")
        except ImportError as exc:
            use, why = (
                False,
                f"compiled modules failed to import ({exc}); rebuild: pip install -e .",
            )
            for name in COMPILED:
                sys.modules.pop(f"{__name__.rpartition('.')[0]}.{name}", None)
    if use:
        HOT_PATH = "mypyc"
    else:
        if any(_compiled_files(HERE, name) for name in COMPILED):
            _load_sources()
        HOT_PATH = f"python: {why}"
    return HOT_PATH
