"""Build step beyond pyproject.toml: compile the load engine's hot path with mypyc.

``labkit/load/client.py`` and ``worker.py`` (the per-request code of the load
generator) become C extensions when mypyc and a C compiler are available; otherwise,
or with ``LABKIT_PURE_PYTHON=1``, labkit installs as pure Python and behaves the same,
only using more CPU per request. The build records the SHA-256 of each compiled
source in ``labkit/load/_native.json``; ``labkit.load.native`` uses the compiled
copies only while the sources still match (see its docstring).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
LOAD = ROOT / "labkit" / "load"
sys.path.insert(0, str(LOAD))  # native.py alone, without importing the labkit package
from native import COMPILED, MANIFEST, source_digests  # noqa: E402

sys.path.pop(0)


class OptionalBuildExt(build_ext):
    """Compile the hot path if possible; a failure leaves a working pure-Python install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler/linker failure
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        (LOAD / MANIFEST).unlink(missing_ok=True)
        print(
            f"labkit: compiling the load engine's hot path failed ({exc}); "
            "installing it as pure Python (slower, same results)",
            file=sys.stderr,
        )


def _extensions() -> list[object]:
    if os.environ.get("LABKIT_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("labkit: mypyc not available; the load engine stays pure Python", file=sys.stderr)
        return []
    (LOAD / MANIFEST).write_text(json.dumps(source_digests(LOAD), indent=2) + "\n")
    paths = [f"labkit/load/{name}.py" for name in COMPILED]
    # The build environment has mypy but not numpy/httptools/uvloop: untyped there.
    return list(mypycify(["--ignore-missing-imports", *paths], group_name="labkit_native"))


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
