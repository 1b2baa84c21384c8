"""The run's environment: one module names and reads every variable ``labkit run`` sets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from labkit import environment

PACKAGE = Path(environment.__file__).parent
# Set by the sandbox for the processes it starts, not by a run: the stand-in service's
# config, and the digest of a monitoring component's config (a restart when it changes).
SERVICE_OWN = {"LABKIT_SHORTENER_CONFIG", "LABKIT_CONFIG_DIGEST"}


def test_what_the_runner_sets_is_what_the_kernel_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = environment.for_notebook(
        tmp_path, Path("notebooks/02-stateful-services.ipynb"), 9, tmp_path / "spool"
    )
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert environment.run_dir() == tmp_path
    assert environment.headless() is True
    assert environment.notebook_name() == "02-stateful-services"
    assert environment.notebook_cells() == "9"
    assert environment.params_override() == ""
    assert environment.secret_spool() == str(tmp_path / "spool")


def test_outside_a_run_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (environment.RUN_DIR, environment.NOTEBOOK, environment.SECRET_SPOOL):
        monkeypatch.delenv(name, raising=False)
    assert environment.run_dir() is None
    assert environment.headless() is False
    assert environment.notebook_name() == "interactive"
    assert environment.secret_spool() is None


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            found.add(id(body[0].value))
    return found


def test_no_other_module_names_a_variable_of_the_run() -> None:
    named = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "environment.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
                and node.value.startswith("LABKIT_")
                and node.value not in SERVICE_OWN
            ):
                named.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value}")
    assert named == []
