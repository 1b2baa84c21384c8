"""The headless runner: every artefact, failures and timeouts recorded, no secret leaks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat
import papermill
import psutil
import pytest

from labkit.cli import main
from labkit.run import REPOSITORY, run_labbook
from tests.htmlcheck import external_fetches

PLANTED = "planted-Secret-value-8d1f"
KERNEL_ONLY = "kernel-only-token-K10abc::server:77"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICNtLKvPvcCPorkFHDdsdGH162eg8HOrX1ecywLrrATw"


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
    # 0.1.3 passes only when known_hosts holds the node's key (any valid key will do here).
    (tmp_path / "known_hosts").write_text(f"127.0.0.1 {HOST_KEY}\n")
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


def _spools() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("labkit-secrets-*"))


def _kernel_only_secret() -> str:
    """A value new to this process: one an earlier test registered would be masked anyway."""
    return f"kernel-only-{uuid.uuid4().hex}"


def _leaky_notebook(path: Path, kernel_only: str) -> None:
    """A notebook that prints the planted secret and a secret only its kernel learns."""
    _notebook(
        path,
        "import os\nfrom labkit.secrets import Secret",
        "print(os.environ['LABKIT_TEST_PLANTED'])",
        f"print(Secret({kernel_only!r}, 'a node').reveal())",
    )


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


def test_ctrl_c_records_the_run_scrubs_it_and_reraises(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel_only = _kernel_only_secret()
    spools_before = _spools()
    _leaky_notebook(workspace / "notebooks" / "01-leaky.ipynb", kernel_only)
    _notebook(workspace / "notebooks" / "02-stopped.ipynb", "1 + 1")
    _notebook(workspace / "notebooks" / "03-never.ipynb", "1 + 1")
    execute_notebook = papermill.execute_notebook

    def interrupted_at_02(source: str, output: str, **options: Any) -> Any:
        if Path(source).name != "02-stopped.ipynb":
            return execute_notebook(source, output, **options)
        Path(output).write_text(f"half-written, {kernel_only}")  # as a killed cell leaves it
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted_at_02)
    with pytest.raises(KeyboardInterrupt):  # the CLI turns it into "labkit: interrupted", 130
        _run(workspace, notebooks=["01", "02", "03"])
    run_dir = (workspace / "out").resolve()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "broken" and run["exit_code"] == 2
    assert [(n["notebook"], n["status"]) for n in run["notebooks"]] == [
        ("01-leaky.ipynb", "ok"),
        ("02-stopped.ipynb", "interrupted"),
    ]
    assert "interrupted by Ctrl-C; not run: 03-never.ipynb" in run["notes"]
    assert (run_dir / "results.json").is_file()
    assert "interrupted" in (run_dir / "report.html").read_text()
    assert _files_containing(run_dir, PLANTED) == []
    assert _files_containing(run_dir, kernel_only) == []
    assert _files_containing(run_dir / "logs", "*****")  # the cell output was logged, masked
    assert _spools() == spools_before


def test_a_kernel_only_secret_in_an_error_never_reaches_the_terminal(
    workspace: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    kernel_only = _kernel_only_secret()
    _notebook(
        workspace / "notebooks" / "01-fails.ipynb",
        "from labkit.secrets import Secret\ntoken = Secret(" + repr(kernel_only) + ", 'a node')",
        "raise RuntimeError(f'node rejected token {token.reveal()}')",
    )
    run_dir = _run(workspace, notebooks=["01"])
    (entry,) = json.loads((run_dir / "run.json").read_text())["notebooks"]
    assert entry["error"] == "RuntimeError: node rejected token *****"
    captured = capfd.readouterr()
    assert "01-fails.ipynb: error in" in captured.err
    assert kernel_only not in captured.out + captured.err
    assert _files_containing(run_dir, kernel_only) == []


def test_bad_records_are_skipped_and_break_the_run(
    workspace: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    whole = {
        "id": "0.1.1",
        "title": "params valid",
        "step": "0.1",
        "status": "pass",
        "expected": "",
        "observed": "",
        "evidence": "",
        "duration_s": 0.1,
    }
    _notebook(
        workspace / "notebooks" / "01-records.ipynb",
        "import os\nfrom labkit.results import record, run_dir",
        f"record('checks', [{whole!r}])",
        "record('checks', [{'id': '0.1.4', 'title': 'no status'}])",
        "with open(run_dir() / 'records' / '01-records.jsonl', 'a') as records:\n"
        '    records.write(\'{"kind": "checks", "notebook": "01-rec\')',
        "print(os.environ['LABKIT_TEST_PLANTED'])",
    )
    outcome = run_labbook(
        [workspace / "lab.yaml"],
        notebooks=["01"],
        out=workspace / "out",
        notebooks_dir=workspace / "notebooks",
    )
    assert outcome.exit_code == 2 and outcome.status == "broken"
    run = json.loads((outcome.run_dir / "run.json").read_text())
    assert run["notebooks"][0]["status"] == "ok"
    skipped = [note for note in run["notes"] if note.startswith("records/")]
    assert skipped == [
        "records/01-records.jsonl line 2: skipped, check 0.1.4 has no step, status, expected, "
        "observed, evidence, duration_s",
        "records/01-records.jsonl line 3: skipped, not JSON (Unterminated string starting at: "
        "column 32); a truncated write?",
    ]
    assert "[labkit run] records/01-records.jsonl line 3: skipped" in capfd.readouterr().err
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert [check["id"] for check in results["checks"]] == ["0.1.1"]
    assert "records/01-records.jsonl line 2" in (outcome.run_dir / "report.html").read_text()
    assert _files_containing(outcome.run_dir, PLANTED) == []


def test_the_run_folder_is_scrubbed_when_finishing_fails(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel_only = _kernel_only_secret()
    spools_before = _spools()
    _leaky_notebook(workspace / "notebooks" / "01-leaky.ipynb", kernel_only)

    def disk_full(*_: Any, **__: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("labkit.run.write_results", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        _run(workspace, notebooks=["01"])
    run_dir = (workspace / "out").resolve()
    assert (run_dir / "01-leaky.ipynb").is_file()
    assert _files_containing(run_dir, PLANTED) == []
    assert _files_containing(run_dir, kernel_only) == []
    assert _spools() == spools_before


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


def test_the_terminal_shows_progress_lines_and_no_kernel_transport_warning(
    workspace: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A long cell's progress reaches labkit run's terminal; other kernel stderr does not."""
    _notebook(
        workspace / "notebooks" / "01-progress.ipynb",
        "import sys\nfrom labkit.kernel import progress\n"
        "print('kernel chatter', file=sys.stderr)\n"
        "progress('create')('100 req/s step done: achieved 99 req/s')",
    )
    _run(workspace, notebooks=["01"])
    terminal = capfd.readouterr().err
    assert (
        "[labkit run]     01-progress: create: 100 req/s step done: achieved 99 req/s" in terminal
    )
    assert "kernel chatter" not in terminal
    # The kernel talks to the runner over IPC sockets in a private directory, not TCP.
    assert "without encryption" not in terminal and "Kernel is running over TCP" not in terminal
    executed = nbformat.read(workspace / "out" / "01-progress.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for cell in executed.cells for o in cell.get("outputs", []))
    assert "kernel chatter" in shown and "step done" not in shown  # progress: terminal only


def test_a_notebook_with_slides_gets_an_offline_slideshow(workspace: Path) -> None:
    path = workspace / "notebooks" / "07-slides.ipynb"
    _notebook(path, "print('on a slide')")
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[1].metadata["slideshow"] = {"slide_type": "slide"}
    nbformat.write(notebook, path)
    run_dir = _run(workspace, notebooks=["00", "07"])
    slides = run_dir / "07-slides.slides.html"
    assert slides.is_file() and not (run_dir / "00-preflight.slides.html").exists()
    page = slides.read_text()
    assert "on a slide" in page and external_fetches(page) == []
    run = json.loads((run_dir / "run.json").read_text())
    assert "slides: 07-slides.slides.html (opens offline)" in run["notes"]
    assert 'href="07-slides.slides.html"' in (run_dir / "report.html").read_text()


def test_a_failed_runbook_fails_the_run(workspace: Path) -> None:
    record = (
        "from labkit.results import record\n"
        "record('runbooks', [{'runbook': 'backup-restore', 'status': 'fail', "
        "'summary': 'the restore differs'}])"
    )
    _notebook(workspace / "notebooks" / "07-ops.ipynb", record)
    outcome = run_labbook(
        [workspace / "lab.yaml"],
        notebooks=["07"],
        out=workspace / "out",
        notebooks_dir=workspace / "notebooks",
    )
    assert outcome.exit_code == 1 and outcome.status == "failed"
    run = json.loads((outcome.run_dir / "run.json").read_text())
    assert "runbook backup-restore failed: the restore differs" in run["notes"]
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert results["runbooks"][0]["status"] == "fail"


@pytest.mark.parametrize("selection", ["", " ", ",", " , ,", "42", "0", "00,zz"])
def test_a_selection_of_no_notebook_is_refused(
    selection: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty --notebooks is a mistake, not "all": nothing runs, the prefixes are listed."""
    out = workspace / "out"
    code = main(["run", "--params", str(workspace / "lab.yaml"), "--notebooks", selection])
    err = capsys.readouterr().err
    assert code == 2
    assert "available: 00, 01, 02, 03, 04, 05, 06, 07" in err
    assert "Traceback" not in err
    assert not out.exists()


# `labkit run` with the lab-book's notebooks taken from the folder given first (a test's), and
# Ctrl-C raising KeyboardInterrupt as in a terminal (a shell's background job starts with
# SIGINT ignored).
_RUNNER = (
    "import signal, sys; from pathlib import Path; import labkit.run as run; "
    "from labkit.cli import main; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "run.REPOSITORY = Path(sys.argv[1]); sys.exit(main(sys.argv[2:]))"
)


def test_ctrl_c_ends_the_run_without_a_kernel_traceback(workspace: Path) -> None:
    """A terminal's Ctrl-C (SIGINT to the foreground process group) while a cell runs."""
    started = workspace / "cell-started"
    _notebook(
        workspace / "notebooks" / "01-sleep.ipynb",
        f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(300)",
    )
    argv = ["run", "--params", str(workspace / "lab.yaml"), "--notebooks", "01"]
    argv += ["--out", str(workspace / "out")]
    terminal = workspace / "terminal.txt"
    with terminal.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(workspace), *argv],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    kernels: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while not started.exists():
            assert process.poll() is None, terminal.read_text()
            assert time.monotonic() < deadline, "the cell never started"
            time.sleep(0.2)
        kernels = psutil.Process(process.pid).children(recursive=True)
        assert kernels, "no kernel process under labkit run"
        os.killpg(process.pid, signal.SIGINT)
        status = process.wait(timeout=60)
        shown = terminal.read_text()
        assert status == 130, shown
        assert "labkit: interrupted" in shown
        assert "Traceback" not in shown and "ZMQError" not in shown, shown
        _, alive = psutil.wait_procs(kernels, timeout=15)
        assert alive == [], f"kernel processes left running: {alive}"
        run = json.loads((workspace / "out" / "run.json").read_text())
        assert [(n["notebook"], n["status"]) for n in run["notebooks"]] == [
            ("01-sleep.ipynb", "interrupted")
        ]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for kernel in kernels:  # only the processes this test started
            with contextlib.suppress(psutil.NoSuchProcess):
                kernel.kill()
