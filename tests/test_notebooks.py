"""Notebook hygiene: no outputs, safe parameters, thin cells, the runner's parameters exist."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from labkit.notebook import PARAMS_OVERRIDE
from labkit.run import REPOSITORY, available_notebooks, run_labbook
from labkit.sandbox import Sandbox
from tests.chartcheck import charts_with_log_problems

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
@pytest.mark.timeout(1800)
def test_every_notebook_runs_top_to_bottom_with_nbval(sandbox: Sandbox) -> None:
    """nbval (lax) on the committed notebooks, against this session's private sandbox."""
    environment = {
        **os.environ,
        "PLOTLY_RENDERER": "plotly_mimetype+notebook",
        PARAMS_OVERRIDE: str(sandbox.lab.files[0]),
    }
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


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_lab_book_passes_headless_on_the_sandbox(sandbox: Sandbox, tmp_path: Path) -> None:
    """The main job (`labkit run --apply` on a sandbox): every notebook ok, no check failing."""
    outcome = run_labbook([sandbox.lab.files[0]], out=tmp_path / "run", apply=True)
    run = json.loads((outcome.run_dir / "run.json").read_text())
    assert [n["status"] for n in run["notebooks"]] == ["ok"] * len(NOTEBOOKS), run["notebooks"]
    results = json.loads((outcome.run_dir / "results.json").read_text())
    bad = [
        (c["id"], c["subject"], c["observed"])
        for c in results["checks"]
        if c["status"] in {"fail", "error"}
    ]
    assert bad == []
    assert outcome.exit_code == 0
    assert run["checks"]["pass"] > 50  # phases 0-3 and 6 really ran against the sandbox
    assert results["load"] and results["plans"]
    assert charts_with_log_problems(outcome.run_dir / "charts") == {}
