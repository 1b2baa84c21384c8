"""The headless runner: every artefact, failures and timeouts recorded, no secret leaks."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from labkit.cli import main
from labkit.run import REPOSITORY, run_labbook
from tests.htmlcheck import external_fetches

PLANTED = "planted-Secret-value-8d1f"
KERNEL_ONLY = "kernel-only-token-K10abc::server:77"


def _notebook(path: Path, *sources: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    parameters = nbformat.v4.new_code_cell('params_file = "../params/local.yaml"\napply = False')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, *(nbformat.v4.new_code_cell(src) for src in sources)]
    nbformat.write(notebook, path)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lab of kind 'homelab' on loopback only (so no sandbox is needed) and notebook 00."""
    monkeypatch.setenv("LABKIT_TEST_PLANTED", PLANTED)
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPOSITORY / "notebooks" / "00-preflight.ipynb", tmp_path / "notebooks")
    key = tmp_path / "id_test"
    key.write_text("not a real key")
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "lab.yaml").write_text(
        f"""extends: {REPOSITORY / "params" / "homelab.yaml"}
name: looplab
nodes:
  - {{name: k3s-node-01, address: 127.0.0.1, ssh_user: test, ssh_key: {key}}}
ssh: {{known_hosts: {tmp_path / "known_hosts"}}}
versions: {{k3s: v1.31.12+k3s1, istio: "1.24.6", pgo: v6.0.3}}
postgres: {{password: {{env: LABKIT_TEST_PLANTED}}}}
shlink: {{api_key: {{env: LABKIT_TEST_PLANTED}}}}
allow_list: [127.0.0.1]
"""
    )
    return tmp_path


def _run(workspace: Path, timeout: float = 120.0, notebooks: list[str] | None = None) -> Path:
    outcome = run_labbook(
        [workspace / "lab.yaml"],
        notebooks=notebooks,
        out=workspace / "out",
        cell_timeout_s=timeout,
        notebooks_dir=workspace / "notebooks",
    )
    assert outcome.run_dir == (workspace / "out").resolve()
    return outcome.run_dir


def _files_containing(folder: Path, text: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and text in p.read_text(errors="replace")]


def test_a_passing_run_writes_every_artefact(
    workspace: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    outcome = run_labbook(
        [workspace / "lab.yaml"], out=workspace / "out", notebooks_dir=workspace / "notebooks"
    )
    run_dir = outcome.run_dir
    assert outcome.exit_code == 0, (run_dir / "run.json").read_text()
    for name in ("run.json", "results.json", "report.html", "00-preflight.ipynb"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "charts").is_dir() and (run_dir / "logs" / "run.log").is_file()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "passed"
    assert run["notebooks"][0]["status"] == "ok"
    assert run["versions"]["papermill"] != "not installed"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["schema"] == "labkit.results/1"
    assert {c["id"] for c in results["checks"]} >= {"0.1.1", "0.1.4", "0.1.5", "0.1.6"}
    report = (run_dir / "report.html").read_text()
    assert "Current Status Tracker" in report and "0.1.4" in report
    assert external_fetches(report) == []  # nothing to fetch: the page works offline
    progress = capfd.readouterr().err
    assert "[labkit run]   00-preflight: cell 1/11" in progress
    assert "[labkit run] 00-preflight.ipynb: ok in" in progress


def test_a_failing_check_exits_1(workspace: Path) -> None:
    (workspace / "known_hosts").unlink()
    outcome = run_labbook(
        [workspace / "lab.yaml"], out=workspace / "out", notebooks_dir=workspace / "notebooks"
    )
    assert outcome.exit_code == 1
    assert json.loads((outcome.run_dir / "run.json").read_text())["status"] == "failed"


def test_a_failing_notebook_is_recorded_and_the_report_written(workspace: Path) -> None:
    _notebook(workspace / "notebooks" / "01-broken.ipynb", "raise RuntimeError('deliberate')")
    _notebook(workspace / "notebooks" / "02-after.ipynb", "1 + 1")
    outcome = run_labbook(
        [workspace / "lab.yaml"], out=workspace / "out", notebooks_dir=workspace / "notebooks"
    )
    assert outcome.exit_code == 2
    run = json.loads((outcome.run_dir / "run.json").read_text())
    statuses = {n["notebook"]: n["status"] for n in run["notebooks"]}
    assert statuses == {
        "00-preflight.ipynb": "ok",
        "01-broken.ipynb": "error",
        "02-after.ipynb": "ok",
    }
    broken = next(n for n in run["notebooks"] if n["notebook"] == "01-broken.ipynb")
    assert broken["error"] == "RuntimeError: deliberate"
    assert "RuntimeError: deliberate" in (outcome.run_dir / "report.html").read_text()


def test_a_cell_timeout_is_recorded(workspace: Path) -> None:
    _notebook(workspace / "notebooks" / "01-slow.ipynb", "import time\ntime.sleep(120)")
    outcome = run_labbook(
        [workspace / "lab.yaml"],
        notebooks=["01"],
        out=workspace / "out",
        cell_timeout_s=3,
        notebooks_dir=workspace / "notebooks",
    )
    assert outcome.exit_code == 2
    (entry,) = json.loads((outcome.run_dir / "run.json").read_text())["notebooks"]
    assert entry["status"] == "timeout"
    assert (outcome.run_dir / "report.html").is_file()


def test_a_dead_kernel_is_recorded(workspace: Path) -> None:
    _notebook(workspace / "notebooks" / "01-dies.ipynb", "import os\nos._exit(3)")
    outcome = run_labbook(
        [workspace / "lab.yaml"],
        notebooks=["01"],
        out=workspace / "out",
        cell_timeout_s=30,
        notebooks_dir=workspace / "notebooks",
    )
    assert outcome.exit_code == 2
    (entry,) = json.loads((outcome.run_dir / "run.json").read_text())["notebooks"]
    assert entry["status"] in {"dead-kernel", "error"}
    assert (outcome.run_dir / "report.html").is_file()


def test_planted_secret_reaches_no_file(workspace: Path) -> None:
    # A careless cell prints the secret itself; the check table resolves it too; and a
    # secret only the kernel learns (like a token read from a node) is printed as well.
    spools_before = set(Path(tempfile.gettempdir()).glob("labkit-secrets-*"))
    _notebook(
        workspace / "notebooks" / "01-leaky.ipynb",
        "from labkit import notebook as nb\nfrom labkit.secrets import Secret, resolve\n"
        "lab = nb.open_lab(params_file)",
        "print(resolve(lab.postgres.password).reveal())",
        f"print(Secret({KERNEL_ONLY!r}, 'a node').reveal())",
        "nb.check(lab, phase=0)",
    )
    outcome = run_labbook(
        [workspace / "lab.yaml"], out=workspace / "out", notebooks_dir=workspace / "notebooks"
    )
    assert json.loads((outcome.run_dir / "run.json").read_text())["notebooks"][1]["status"] == "ok"
    assert _files_containing(outcome.run_dir, PLANTED) == []
    assert _files_containing(outcome.run_dir, KERNEL_ONLY) == []
    assert set(Path(tempfile.gettempdir()).glob("labkit-secrets-*")) == spools_before
    assert _files_containing(outcome.run_dir, "*****")  # it was there, masked


def test_unknown_notebook_prefix_is_a_clear_error(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--params", str(workspace / "lab.yaml"), "--notebooks", "00,42"])
    assert code == 2
    assert "no notebook for ['42']" in capsys.readouterr().err


def test_a_used_run_folder_is_refused(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workspace / "out").mkdir()
    (workspace / "out" / "run.json").write_text("{}")
    code = main(["run", "--params", str(workspace / "lab.yaml"), "--out", str(workspace / "out")])
    assert code == 2
    assert "is not empty; a run folder holds one run only" in capsys.readouterr().err


def test_an_unwritable_output_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    lab = str(REPOSITORY / "params" / "homelab.yaml")
    code = main(["check", "--params", lab, "--phase", "0", "--json", "/proc/labkit/r.json"])
    captured = capsys.readouterr()
    assert code == 2
    assert "labkit: /proc/labkit: No such file or directory" in captured.err
    assert "Traceback" not in captured.err


def test_bad_params_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = REPOSITORY / "tests" / "data" / "params" / "broken" / "unknown-key.yaml"
    code = main(["run", "--params", str(bad), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "redis.maxmemroy: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
