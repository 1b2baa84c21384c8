"""In a kernel: a LabkitError is one short message, bugs keep tracebacks, threads stay quiet.

The notebooks here run in real IPython kernels (nbclient / papermill), as JupyterLab
and ``labkit run`` run them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from labkit.kernel import PROGRESS_MARK, progress

REPOSITORY = Path(__file__).resolve().parent.parent
SANDBOX_DOWN = "the sandbox is not running: `labkit sandbox up`"


def _run_cells(*sources: str, fails: bool = True) -> nbformat.NotebookNode:
    """Run ``sources`` as code cells in a fresh python3 kernel; the notebook with outputs."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    client = NotebookClient(notebook, timeout=120, kernel_name="python3")
    if fails:
        with pytest.raises(CellExecutionError):
            client.execute()
    else:
        client.execute()
    return notebook


def _outputs(notebook: nbformat.NotebookNode, kind: str) -> list[Any]:
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.output_type == kind
    ]


def assert_one_short_message(notebook: nbformat.NotebookNode, words: str) -> None:
    """One error output whose whole "traceback" is one line naming ``words``; no traceback."""
    errors = _outputs(notebook, "error")
    assert len(errors) == 1, errors
    lines = errors[0].traceback
    assert len(lines) == 1 and words in lines[0], lines
    text = "\n".join(lines) + "".join(o.text for o in _outputs(notebook, "stream"))
    assert "Traceback" not in text and 'File "' not in text and "site-packages" not in text


def test_a_labkit_error_in_a_cell_is_one_short_message() -> None:
    notebook = _run_cells(
        "from labkit import notebook as nb",
        f"from labkit.errors import ConnectError\nraise ConnectError({SANDBOX_DOWN!r})",
        "print('never reached')",
    )
    assert_one_short_message(notebook, "labkit sandbox up")
    error = _outputs(notebook, "error")[0]
    assert (error.ename, error.evalue) == ("ConnectError", SANDBOX_DOWN)  # runners see the kind
    assert notebook.cells[2].outputs == []  # the cell still failed: execution stopped there


def test_a_bug_keeps_its_traceback() -> None:
    notebook = _run_cells(
        "from labkit import notebook as nb", "def broken():\n    return 1 / 0\n\nbroken()"
    )
    error = _outputs(notebook, "error")[0]
    assert error.ename == "ZeroDivisionError"
    assert len(error.traceback) > 1 and any("broken" in line for line in error.traceback)


def test_secrets_in_a_labkit_error_are_masked() -> None:
    notebook = _run_cells(
        "from labkit import notebook as nb\nfrom labkit.secrets import Secret\n"
        "Secret('kernel-secret-4242', 'test')",
        "from labkit.errors import ConfigError\nraise ConfigError('bad token kernel-secret-4242')",
    )
    assert "kernel-secret-4242" not in _outputs(notebook, "error")[0].traceback[0]


@pytest.mark.parametrize(
    ("headless", "expected"),
    [
        (True, f"{PROGRESS_MARK}create: 100 req/s\n{PROGRESS_MARK}create:   5/10s sent 500\n"),
        (False, ""),  # interactive: a display line updated in place, nothing on stderr
    ],
)
def test_progress_goes_to_the_runner_only_headless(
    headless: bool,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    if headless:
        monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path))
    else:
        monkeypatch.delenv("LABKIT_RUN_DIR", raising=False)
    sink = progress("create")
    sink("100 req/s")
    sink("  5/10s sent 500")
    assert capsys.readouterr().err == expected


def test_progress_in_jupyterlab_is_one_line_updated_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LABKIT_RUN_DIR", raising=False)
    notebook = _run_cells(
        "from labkit.kernel import progress\nshow = progress('create')\n"
        "show('100 req/s for 10s')\nshow('create: 100 req/s step done')",
        fails=False,
    )
    outputs = notebook.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data"], outputs
    assert outputs[0].data["text/plain"] == "create: 100 req/s step done"  # not labelled twice


def test_paramiko_threads_print_no_traceback(tmp_path: Path) -> None:
    """A port that answers but is not SSH: paramiko's thread fails; only the ConnectError shows."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True
    )
    (tmp_path / "known_hosts").touch()
    script = f"""
import socket, threading
from pathlib import Path
from labkit.errors import ConnectError
from labkit.hosts import Host
from labkit.params import Node, Ssh

server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(4)

def serve():
    while True:
        connection, _ = server.accept()
        connection.sendall(b"not ssh\\r\\n" * 3)
        connection.close()

threading.Thread(target=serve, daemon=True).start()
node = Node(name="k3s-node-01", address="127.0.0.1", ssh_user="root",
            ssh_port=server.getsockname()[1], ssh_key=Path({str(tmp_path / "key")!r}))
ssh = Ssh(known_hosts=Path({str(tmp_path / "known_hosts")!r}), connect_timeout_s=3,
          use_ssh_config=False)
try:
    Host(node, ssh).connect()
except ConnectError as exc:
    print("ConnectError:", exc)
"""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert "ConnectError: k3s-node-01" in completed.stdout, completed
    assert completed.stderr == "", completed.stderr  # paramiko's thread logged to labkit's DEBUG


_GUARD = importlib.util.find_spec("labkit.routes") is not None


@pytest.mark.slow
@pytest.mark.skipif(
    not _GUARD,
    reason="needs the check that the sandbox is running before any connection (labkit.routes, "
    "issue 11's sandbox-down guard), not merged into this branch yet",
)
def test_notebook_01_with_the_sandbox_down_says_what_to_do(
    tmp_path: Path, private_sandbox_params: Callable[..., Path]
) -> None:
    """Notebook 01 on a sandbox that is not running: one short message, no traceback."""
    params = private_sandbox_params(tmp_path, name="sandbox-down")  # never brought up
    output = tmp_path / "01.ipynb"
    with pytest.raises(papermill.PapermillExecutionError):
        papermill.execute_notebook(
            str(REPOSITORY / "notebooks" / "01-infrastructure.ipynb"),
            str(output),
            parameters={"params_file": str(params)},
            cwd=str(REPOSITORY / "notebooks"),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=300,
        )
    assert_one_short_message(nbformat.read(output, as_version=4), "labkit sandbox up")
