"""Notebook hygiene: no outputs, safe parameters, thin cells, the runner's parameters exist."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from labkit.run import REPOSITORY, available_notebooks

NOTEBOOKS = available_notebooks(REPOSITORY / "notebooks")
RUNNER_PARAMETERS = {"params_file", "apply"}  # what labkit.run may inject into any notebook


def test_the_lab_book_starts_with_preflight() -> None:
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00-preflight.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs; strip them"
            assert cell.execution_count is None, f"{path.name}: execution counts left in"
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_with_safe_defaults(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    values = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), f"{path.name}: parameters cell holds only assignments"
        values[node.targets[0].id] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
    assert values["params_file"] == "../params/local.yaml"
    assert values["apply"] is False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runner_parameters_exist_in_the_notebook(path: Path) -> None:
    # papermill only warns about unknown parameters; a typo would silently use the default.
    declared = set(papermill.inspect_notebook(str(path)))
    assert declared >= RUNNER_PARAMETERS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_are_thin(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        defined = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defined, f"{path.name}: logic belongs in labkit, not in a notebook cell"
        assert len(cell.source.splitlines()) <= 10, f"{path.name}: a cell over ten lines"


@pytest.mark.slow
def test_every_notebook_runs_top_to_bottom_with_nbval() -> None:
    """nbval (lax) on the committed notebooks, against the sandbox (brought up if it is not)."""
    from labkit.params import load_lab
    from labkit.sandbox import ensure_up

    lab = load_lab(REPOSITORY / "params" / "local.yaml")
    environment = {**os.environ, "PLOTLY_RENDERER": "plotly_mimetype+notebook"}
    with ensure_up(lab):
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--nbval-lax",
                "--nbval-current-env",
                "-p",
                "no:cacheprovider",
                "-q",
                "-o",
                "addopts=",
                "-o",
                "filterwarnings=",
                *[str(p) for p in NOTEBOOKS],
            ],
            cwd=REPOSITORY / "notebooks",
            env=environment,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
