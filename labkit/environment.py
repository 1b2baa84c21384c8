"""What ``labkit run`` tells a notebook's kernel through its environment, written and read here.

The runner sets these for each notebook it executes (``for_notebook``); labkit
code inside the kernel reads them through the functions below, never through
``os.environ`` directly, so there is one list of names and one meaning for each.
Outside a run (JupyterLab, the test suite) none is set: ``headless()`` is False
(unless ``LABKIT_HEADLESS=1``) and ``run_dir()`` is None.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "HEADLESS",
    "NOTEBOOK",
    "NOTEBOOK_CELLS",
    "PARAMS_OVERRIDE",
    "RUN_DIR",
    "SECRET_SPOOL",
    "for_notebook",
    "headless",
    "notebook_cells",
    "notebook_name",
    "params_override",
    "run_dir",
    "secret_spool",
]

RUN_DIR = "LABKIT_RUN_DIR"  # the run folder: records, charts
NOTEBOOK = "LABKIT_NOTEBOOK"  # the notebook being executed (its stem)
NOTEBOOK_CELLS = "LABKIT_NOTEBOOK_CELLS"  # how many cells it has, for progress lines
PARAMS_OVERRIDE = "LABKIT_PARAMS_OVERRIDE"  # tests only: params for notebooks run by nbval
SECRET_SPOOL = "LABKIT_SECRET_SPOOL"  # where a kernel spools the secrets it learns
HEADLESS = "LABKIT_HEADLESS"  # "1": never wait for a click (papermill run by hand)


def for_notebook(run_folder: Path, notebook: Path, cells: int, spool: Path) -> dict[str, str]:
    """The variables the runner sets while it executes ``notebook`` of the run in ``run_folder``."""
    return {
        RUN_DIR: str(run_folder),
        NOTEBOOK: notebook.stem,
        NOTEBOOK_CELLS: str(cells),
        PARAMS_OVERRIDE: "",  # the run's params, never a leftover test override
        SECRET_SPOOL: str(spool),  # the kernel's only: the runner reading it must not write it
    }


def run_dir() -> Path | None:
    """The run folder when executing under ``labkit run``, else None (interactive use)."""
    value = os.environ.get(RUN_DIR)
    return Path(value) if value else None


def headless() -> bool:
    """True under ``labkit run`` (it sets ``LABKIT_RUN_DIR``) or with ``LABKIT_HEADLESS=1``.

    Nothing then waits for a click. Papermill run by hand is told apart the same way
    (``LABKIT_HEADLESS=1 papermill ...``): a kernel cannot see whether a person watches it.
    """
    return run_dir() is not None or os.environ.get(HEADLESS) == "1"


def notebook_name(default: str = "interactive") -> str:
    """The notebook being executed under ``labkit run``, else ``default``."""
    return os.environ.get(NOTEBOOK) or default


def notebook_cells() -> str:
    """How many cells the notebook being executed has (``?`` when unknown)."""
    return os.environ.get(NOTEBOOK_CELLS) or "?"


def params_override() -> str:
    """A params file that replaces the notebook's own (the test suite's), or ``""``."""
    return os.environ.get(PARAMS_OVERRIDE, "")


def secret_spool() -> str | None:
    """The file a kernel appends newly learned secrets to under ``labkit run``, or None."""
    return os.environ.get(SECRET_SPOOL) or None
