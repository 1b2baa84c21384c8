"""The compiled hot path: used only when built from the sources beside it, else the sources."""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import labkit
from labkit.load import native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
ROOT = Path(labkit.__file__).resolve().parent.parent


def _tree(tmp_path: Path, compiled: tuple[str, ...] = native.COMPILED) -> Path:
    """A directory with the sources, fake compiled files and a matching manifest."""
    for name in native.COMPILED:
        (tmp_path / f"{name}.py").write_text(f"# {name}\n")
    for name in compiled:
        (tmp_path / f"{name}{SUFFIX}").write_bytes(b"\x7fELF")
    (tmp_path / native.MANIFEST).write_text(json.dumps(native.source_digests(tmp_path)))
    return tmp_path


def test_fresh_compiled_copies_are_used(tmp_path: Path) -> None:
    assert native.compiled_state(_tree(tmp_path)) == (True, "")


def test_no_compiled_copies_means_python(tmp_path: Path) -> None:
    use, why = native.compiled_state(_tree(tmp_path, compiled=()))
    assert not use and "not compiled" in why


def test_an_edited_source_makes_its_compiled_copy_stale(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "worker.py").write_text("# worker, edited\n")
    use, why = native.compiled_state(tree)
    assert not use
    assert "worker.py changed since it was compiled" in why and "pip install -e ." in why


def test_half_a_build_or_no_manifest_is_not_used(tmp_path: Path) -> None:
    use, why = native.compiled_state(_tree(tmp_path, compiled=("client",)))
    assert not use and "only client compiled" in why
    (tmp_path / f"worker{SUFFIX}").write_bytes(b"\x7fELF")
    (tmp_path / native.MANIFEST).write_text("{not json")
    use, why = native.compiled_state(tmp_path)
    assert not use and native.MANIFEST in why


def _compiled_here() -> bool:
    return native.compiled_state(native.HERE)[0]


def test_this_install_runs_the_compiled_hot_path() -> None:
    if not _compiled_here():
        pytest.skip(f"hot path not compiled here: {native.compiled_state(native.HERE)[1]}")
    import labkit.load.client
    import labkit.load.worker

    assert native.HOT_PATH == "mypyc"
    for module in (labkit.load.client, labkit.load.worker):
        assert str(module.__file__).endswith(SUFFIX), module.__file__


def test_a_stale_compiled_copy_is_bypassed_end_to_end(tmp_path: Path) -> None:
    """A copy of the package with client.py edited after the build loads both sources."""
    if not _compiled_here():
        pytest.skip(f"hot path not compiled here: {native.compiled_state(native.HERE)[1]}")
    shutil.copytree(
        ROOT / "labkit", tmp_path / "labkit", ignore=shutil.ignore_patterns("__pycache__")
    )
    for group_lib in ROOT.glob(f"*__mypyc{SUFFIX}"):
        shutil.copy2(group_lib, tmp_path)
    client = tmp_path / "labkit" / "load" / "client.py"
    client.write_text(client.read_text() + "\nEDITED_AFTER_BUILD = True\n")
    probe = (
        "import labkit.load.native as n, labkit.load.client as c, labkit.load.worker as w\n"
        "print(n.HOT_PATH); print(c.__file__); print(w.__file__); print(c.EDITED_AFTER_BUILD)\n"
        "print(w.Pool is c.Pool)"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert output[0].startswith("python: client.py changed since it was compiled"), output
    assert output[1] == str(client)
    assert output[2] == str(tmp_path / "labkit" / "load" / "worker.py")
    assert output[3:] == ["True", "True"]
