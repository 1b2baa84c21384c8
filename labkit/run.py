"""The headless runner: the lab-book's notebooks, in order, through papermill into a run folder.

``outputs/<run-id>/`` receives ``run.json`` (what ran, when, versions, status per
notebook), ``results.json`` (see labkit.results), the executed notebooks,
``report.html``, ``charts/`` and ``logs/``. A failing cell, a timeout, a dead
kernel, a record that cannot be read or a Ctrl-C is recorded and the report is still
written; the run folder is scrubbed of secrets however the run ends. Exit status: 0
every check passed or skipped, 1 a check or a runbook failed, 2 the run itself broke (a Ctrl-C is
re-raised once the run is recorded).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import platform
import queue
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from labkit.checks import Result, Results
from labkit.environment import for_notebook, notebook_cells, notebook_name
from labkit.errors import ConfigError, LabkitError
from labkit.kernel import PROGRESS_MARK
from labkit.params import Lab, load_lab
from labkit.results import collect, write_results
from labkit.secrets import RedactingFilter, redact, register_spooled

__all__ = ["REPOSITORY", "RunOutcome", "available_notebooks", "run_labbook"]

REPOSITORY = Path(__file__).resolve().parent.parent
_NOTEBOOK = re.compile(r"^(\d\d)-[a-z0-9-]+\.ipynb$")
_TOOLS = ("labkit", "papermill", "nbclient", "ipykernel", "plotly", "pandas", "paramiko", "httpx")
log = logging.getLogger("labkit.run")


@dataclass(frozen=True)
class RunOutcome:
    """Where a run went and how it ended."""

    run_dir: Path
    status: str  # passed | failed | broken
    exit_code: int

    @property
    def report_path(self) -> Path:
        """The run's report.html."""
        return self.run_dir / "report.html"


def available_notebooks(directory: Path) -> list[Path]:
    """The lab-book's notebooks (``NN-name.ipynb``) in ``directory``, in order."""
    return sorted(path for path in directory.glob("*.ipynb") if _NOTEBOOK.match(path.name))


def _select(directory: Path, wanted: list[str] | None) -> list[Path]:
    """The notebooks ``wanted`` names by prefix (``00``, ``06-perf``), in the order given.

    None selects every notebook; a selection that names none (``--notebooks ''``) is a
    mistake, not "all", and so is a prefix that matches no notebook or several.
    """
    found = available_notebooks(directory)
    if not found:
        raise ConfigError(f"no notebooks (NN-name.ipynb) in {directory}")
    if wanted is None:
        return found
    available = ", ".join(path.name[:2] for path in found)
    given = ",".join(wanted)
    prefixes = [prefix.strip() for prefix in wanted if prefix.strip()]
    if not prefixes:
        raise ConfigError(
            f"--notebooks {given!r} names no notebook; give comma-separated prefixes "
            f"(available: {available}), or leave --notebooks out to run them all"
        )
    selected: list[Path] = []
    unknown: list[str] = []
    several: list[str] = []
    for prefix in prefixes:
        matches = [path for path in found if path.name.startswith(prefix)]
        if not matches:
            unknown.append(prefix)
        elif len(matches) > 1:
            several.append(prefix)
        elif matches[0] not in selected:
            selected.append(matches[0])
    if unknown or several:
        problems = [f"no notebook for {unknown}"] if unknown else []
        problems += [f"{several} match several notebooks"] if several else []
        raise ConfigError(f"--notebooks {given}: {'; '.join(problems)}; available: {available}")
    return selected


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for tool in _TOOLS:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "not installed"
    return versions


def _register_secrets(lab: Lab) -> None:
    """Resolve the lab's env/file secrets here too, so the runner can mask them in every file."""
    for reference in lab.secret_refs().values():
        if reference.kind == "kubernetes":
            continue
        with contextlib.suppress(ConfigError):  # unresolvable now: nothing to mask yet
            lab.secret(reference)


@contextlib.contextmanager
def _scrubbed(run_dir: Path) -> Iterator[None]:
    """Mask registered secrets in the run folder on the way out, however the run ends."""
    try:
        yield
    finally:
        _scrub(run_dir)


@contextlib.contextmanager
def _secret_spool() -> Iterator[Path]:
    """A file where kernels add the secrets they learn; registered, then deleted, on the way out."""
    descriptor, name = tempfile.mkstemp(prefix="labkit-secrets-")  # mode 600, not in the run
    os.close(descriptor)
    spool = Path(name)
    try:
        yield spool
    finally:
        try:
            register_spooled(spool)
        finally:
            spool.unlink(missing_ok=True)


def _scrub(run_dir: Path) -> int:
    """Mask registered secrets in every text file of the run folder; returns files changed."""
    changed = 0
    for path in run_dir.rglob("*"):
        if not path.is_file() or path.suffix not in {
            ".ipynb",
            ".json",
            ".jsonl",
            ".html",
            ".log",
            ".txt",
            ".md",
        }:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        clean = redact(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
            changed += 1
    return changed


class _CellProgress(logging.Filter):
    """Pass papermill's "Executing Cell N" lines and the kernel's progress lines, rewritten.

    A long cell reports progress on the kernel's stderr, marked (labkit.kernel.progress);
    papermill (``log_output``) logs each stderr chunk as a warning, and only the marked
    lines of it reach the terminal.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        notebook = notebook_name("")
        if message.startswith("Executing Cell"):
            total = notebook_cells()
            text = f"[labkit run]   {notebook}: cell {message.split()[2].strip('-')}/{total}"
        else:
            marked = [
                line[len(PROGRESS_MARK) :]
                for line in message.splitlines()
                if line.startswith(PROGRESS_MARK)
            ]
            if not marked:
                return False
            text = "\n".join(f"[labkit run]     {notebook}: {line}" for line in marked)
        record.msg = redact(text)
        record.args = None
        return True


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    progress = logging.StreamHandler(sys.stderr)  # long notebooks show which cell is running
    progress.addFilter(_CellProgress())
    watched = [logging.getLogger("labkit"), logging.getLogger("papermill")]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    watched[1].addHandler(progress)
    try:
        yield
    finally:
        watched[1].removeHandler(progress)
        for logger in watched:
            logger.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _cell_count(notebook: Path) -> int:
    try:
        return len(json.loads(notebook.read_text(encoding="utf-8")).get("cells", []))
    except (OSError, ValueError):
        return 0


@contextlib.contextmanager
def _kernel_sockets() -> Iterator[Any]:
    """Kernel manager config: the kernel talks to the runner over Unix sockets in a private dir.

    The kernel runs on this machine, so it needs no network transport. Over TCP (even
    on loopback) any local user could connect to its ports, which is why ipykernel
    warns that it is "running over TCP without encryption"; IPC sockets in a mode-700
    directory reach only this user, so the warning would be wrong and is not raised.
    """
    from traitlets.config import Config  # noqa: PLC0415 - comes with jupyter_client

    with tempfile.TemporaryDirectory(prefix="labkit-kernel-") as directory:  # mode 700
        yield Config({"KernelManager": {"transport": "ipc", "ip": f"{directory}/kernel"}})


_SETTLE_S = 5.0  # how long an interrupted cell may take to answer before the shutdown goes on


def _settling_kernel_manager() -> type[Any]:
    """The kernel manager class of a run: it shuts a kernel down only once it has settled.

    jupyter_client shuts a kernel down by interrupting it and, at once, asking it to shut
    down. When a cell was running (a Ctrl-C of ``labkit run``), the interrupted cell's
    reply races the shutdown, which closes the kernel's sockets, and the kernel prints a
    ``ZMQError`` traceback on the terminal. Waiting between the two for the kernel's answer
    to a ``kernel_info_request`` (the shell answers in order, so this comes after the
    interrupted cell's reply) lets the kernel shut down with nothing left to send.
    """
    from jupyter_client.manager import AsyncKernelManager  # noqa: PLC0415 - heavy

    class SettlingKernelManager(AsyncKernelManager):
        """An AsyncKernelManager that lets an interrupted cell reply before the shutdown."""

        async def _async_request_shutdown(self, restart: bool = False) -> None:
            await self._settled()
            await super()._async_request_shutdown(restart=restart)

        async def _settled(self) -> None:
            client = self.client()
            client.start_channels(iopub=False, stdin=False, hb=False, control=False)
            try:
                asked = client.kernel_info()
                deadline = time.monotonic() + _SETTLE_S
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        reply = await client.get_shell_msg(timeout=left)
                    except queue.Empty:
                        log.warning("kernel did not answer within %ss; shutting it down", _SETTLE_S)
                        return
                    if reply.get("parent_header", {}).get("msg_id") == asked:
                        return
            finally:
                client.stop_channels()

    return SettlingKernelManager


def _execute(
    notebook: Path, run_dir: Path, parameters: dict[str, Any], cell_timeout_s: float, spool: Path
) -> dict[str, Any]:
    """Run one notebook; never raises for what the notebook does, returns its status record.

    The record is not redacted yet: the kernel may have spooled secrets the runner
    does not know until it reads ``spool``.
    """
    import papermill  # noqa: PLC0415 - heavy; only the runner needs it
    from nbclient.exceptions import CellTimeoutError, DeadKernelError  # noqa: PLC0415
    from papermill.exceptions import PapermillExecutionError  # noqa: PLC0415

    started = time.monotonic()
    entry: dict[str, Any] = {
        "notebook": notebook.name,
        "output": notebook.name,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    environment = {
        # papermill adds a cell of its own to the notebook's
        **for_notebook(run_dir, notebook, _cell_count(notebook) + 1, spool),
        "PLOTLY_RENDERER": "plotly_mimetype+notebook",
    }
    print(f"[labkit run] {notebook.name}: running", file=sys.stderr, flush=True)
    try:
        with _environment(environment), _kernel_sockets() as sockets:
            papermill.execute_notebook(
                str(notebook),
                str(run_dir / notebook.name),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(notebook.parent),
                execution_timeout=cell_timeout_s,
                log_output=True,
                progress_bar=False,
                request_save_on_cell_execute=True,
                config=sockets,
                kernel_manager_class=_settling_kernel_manager(),
            )
        entry["status"] = "ok"
    except PapermillExecutionError as exc:
        entry.update(status="error", cell=exc.exec_count, error=f"{exc.ename}: {exc.evalue}")
    except CellTimeoutError as exc:
        entry.update(status="timeout", error=f"a cell ran longer than {cell_timeout_s:.0f}s: {exc}")
    except DeadKernelError as exc:
        entry.update(status="dead-kernel", error=f"the kernel died: {exc}")
    except Exception as exc:
        entry.update(status="broken", error=f"{type(exc).__name__}: {exc}")
    _drop_progress(run_dir / notebook.name)
    entry["duration_s"] = round(time.monotonic() - started, 2)
    return entry


def _drop_progress(executed: Path) -> None:
    """Remove the progress lines from the executed notebook: they were for the terminal.

    A walkthrough of the run's notebooks then shows each cell's results, not a hundred
    "sent 981 of 2,400" lines above them.
    """
    try:
        document = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # never written (the kernel did not start): nothing to clean
    changed = False
    for cell in document.get("cells", []):
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = "".join(output.get("text", ""))
                lines = [line for line in text.splitlines(keepends=True) if line.strip()]
                rest = [line for line in lines if not line.startswith(PROGRESS_MARK)]
                if len(rest) != len(lines):
                    changed = True
                    if not rest:
                        continue
                    output["text"] = "".join(rest)
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    if changed:
        executed.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def _interrupted(notebook: Path, started_at: dt.datetime, started: float) -> dict[str, Any]:
    """The status record of a notebook that Ctrl-C stopped."""
    return {
        "notebook": notebook.name,
        "output": notebook.name,
        "started_at": started_at.isoformat(timespec="seconds"),
        "status": "interrupted",
        "error": "KeyboardInterrupt: stopped by Ctrl-C while it ran",
        "duration_s": round(time.monotonic() - started, 2),
    }


def _announce(entry: dict[str, Any], spool: Path) -> dict[str, Any]:
    """Print and log how a notebook ended, masked; returns the masked record."""
    register_spooled(spool)  # first: what the kernel learned must not reach the terminal
    entry = redact(entry)
    print(
        f"[labkit run] {entry['notebook']}: {entry['status']} in {entry['duration_s']}s"
        + (f" ({entry['error'][:200]})" if "error" in entry else ""),
        file=sys.stderr,
        flush=True,
    )
    log.info("%s: %s", entry["notebook"], entry["status"])
    return entry


@dataclass(frozen=True)
class _Notebooks:
    """The notebooks of a run and what executing each needs."""

    selected: list[Path]
    run_dir: Path
    parameters: dict[str, Any]
    cell_timeout_s: float
    spool: Path

    def run(self, entries: list[dict[str, Any]]) -> None:
        """Run them in order into ``entries``; on Ctrl-C, record the notebook and re-raise."""
        for notebook in self.selected:
            started_at, started = dt.datetime.now(dt.UTC), time.monotonic()
            try:
                entry = _execute(
                    notebook, self.run_dir, self.parameters, self.cell_timeout_s, self.spool
                )
            except KeyboardInterrupt:
                entries.append(_announce(_interrupted(notebook, started_at, started), self.spool))
                raise
            entries.append(_announce(entry, self.spool))


def _run_lab(
    lab: Lab,
    notebooks: _Notebooks,
    entries: list[dict[str, Any]],
    notes: list[str],
    faults: list[str],
) -> KeyboardInterrupt | None:
    """Run the notebooks with the lab up; what broke the run goes to ``faults``.

    A Ctrl-C is returned, not raised, so that the run is recorded and scrubbed first.
    """
    selected = notebooks.selected
    try:
        with _lab_running(lab, notes):
            notebooks.run(entries)
    except LabkitError as exc:
        faults.append(f"the lab could not be brought up: {exc}")
        log.error("lab not up: %s", exc)
    except KeyboardInterrupt as interruption:
        not_run = [path.name for path in selected[len(entries) :]]
        faults.append(
            "interrupted by Ctrl-C" + (f"; not run: {', '.join(not_run)}" if not_run else "")
        )
        log.error("interrupted by Ctrl-C after %d of %d notebooks", len(entries), len(selected))
        return interruption
    return None


@contextlib.contextmanager
def _lab_running(lab: Lab, notes: list[str]) -> Iterator[None]:
    """For the sandbox: bring it up for the run (and leave it as found); otherwise nothing."""
    if lab.kind != "sandbox":
        yield
        return
    from labkit.sandbox import ensure_up  # noqa: PLC0415 - only sandbox runs need it

    with ensure_up(lab):
        notes.append("sandbox up for the run")
        yield


def run_labbook(
    params: list[Path],
    notebooks: list[str] | None = None,
    out: Path | None = None,
    cell_timeout_s: float = 600.0,
    notebooks_dir: Path | None = None,
    apply: bool = False,
) -> RunOutcome:
    """Run the lab-book headless; ConfigError before anything runs when params are bad."""
    lab = load_lab(*params)
    directory = notebooks_dir or REPOSITORY / "notebooks"
    selected = _select(directory, notebooks)
    started = dt.datetime.now(dt.UTC)
    run_id = f"{started:%Y%m%d-%H%M%S}-{os.urandom(2).hex()}-{lab.name}"
    run_dir = (out or REPOSITORY / "outputs" / run_id).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"--out {run_dir} is not empty; a run folder holds one run only (its results "
            "would mix with the earlier run's): name a new or empty folder"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    for folder in ("charts", "logs", "records"):
        (run_dir / folder).mkdir(exist_ok=True)
    _register_secrets(lab)
    files = [str(path.resolve()) for path in params]
    parameters: dict[str, Any] = {"params_file": files[0] if len(files) == 1 else files}
    notes: list[str] = []
    if apply and lab.kind == "sandbox" and os.geteuid() != 0:
        # Without root the sandbox's nodes share this machine: applying would change it.
        apply = False
        notes.append("not root: the sandbox's nodes are not isolated, so this run is plan-only")
    if apply:
        parameters["apply"] = True  # the notebooks' default is plan-only
    entries: list[dict[str, Any]] = []
    faults: list[str] = []  # what broke the run besides a notebook's own status
    with _scrubbed(run_dir):
        # Leaving the spool registers the secrets the kernels learned, before anything is written.
        with _secret_spool() as spool, _logging_to(run_dir / "logs" / "run.log"):
            log.info("run %s: lab %s, notebooks %s", run_id, lab.name, [p.name for p in selected])
            job = _Notebooks(selected, run_dir, parameters, cell_timeout_s, spool)
            interruption = _run_lab(lab, job, entries, notes, faults)
        if apply:
            notes.append("run with --apply: notebooks applied their changes")
        outcome = _finish(lab, run_id, run_dir, started, files, entries, notes, faults)
    if interruption is not None:
        raise interruption  # recorded and scrubbed: now the CLI can say so and exit 130
    return outcome


def _finish(
    lab: Lab,
    run_id: str,
    run_dir: Path,
    started: dt.datetime,
    files: list[str],
    entries: list[dict[str, Any]],
    notes: list[str],
    faults: list[str],
) -> RunOutcome:
    """Write results.json, run.json and report.html from what the notebooks recorded."""
    from labkit.adr import write_adr  # noqa: PLC0415
    from labkit.report import build_report  # noqa: PLC0415 - report imports plotly

    records = collect(run_dir)
    for skipped in records.skipped:
        print(f"[labkit run] {redact(skipped)}", file=sys.stderr, flush=True)
    faults = faults + records.skipped
    checks = Results(Result.from_dict(_check_fields(item)) for item in records.by_kind["checks"])
    broken = bool(faults) or any(entry["status"] != "ok" for entry in entries)
    exit_code = 2 if broken else checks.exit_code
    # A runbook that ran and failed its measure (a restore unequal to its backup) fails the
    # run like a failing check does.
    failed_runbooks = [
        f"runbook {item.get('runbook')} failed: {item.get('summary')}"
        for item in records.by_kind["runbooks"]
        if item.get("status") == "fail"
    ]
    if failed_runbooks and exit_code == 0:
        exit_code = 1
    notes = notes + failed_runbooks
    status = {0: "passed", 1: "failed", 2: "broken"}[exit_code]
    write_results(
        run_dir / "results.json",
        lab=lab.name,
        checks=records.by_kind["checks"],
        run_id=run_id,
        load=records.by_kind["load"],
        drills=records.by_kind["drills"],
        plans=records.by_kind["plans"],
        runbooks=records.by_kind["runbooks"],
    )
    run_info = {
        "run_id": run_id,
        "lab": lab.name,
        "lab_kind": lab.kind,
        "params": files,
        "started_at": started.isoformat(timespec="seconds"),
        "ended_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "status": status,
        "exit_code": exit_code,
        "versions": _versions(),
        "host": {
            "machine": platform.machine(),
            "system": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "notebooks": entries,
        "checks": checks.counts(),
        "notes": notes + faults + _export_slides(run_dir, entries),
    }
    (run_dir / "run.json").write_text(json.dumps(redact(run_info), indent=2) + "\n")
    try:
        write_adr(run_dir)
        build_report(run_dir)
    except Exception as exc:
        (run_dir / "report.html").write_text(
            f"<!doctype html><title>labkit run {run_id}</title><h1>report failed</h1>"
            f"<pre>{type(exc).__name__}: {exc}</pre>"
        )
        exit_code, status = 2, "broken"
    return RunOutcome(run_dir, status, exit_code)


def _export_slides(run_dir: Path, entries: list[dict[str, Any]]) -> list[str]:
    """Static slideshows of the executed notebooks that have slides; returns notes for run.json.

    A slideshow that cannot be made is a note, not a broken run: the run's results stand.
    """
    from labkit.report import export_slides, has_slides  # noqa: PLC0415

    notes = []
    for entry in entries:
        executed = run_dir / entry["output"]
        try:
            if not has_slides(json.loads(executed.read_text(encoding="utf-8"))):
                continue
            made = export_slides(executed)
        except (OSError, ValueError) as exc:
            notes.append(f"slides of {entry['notebook']} not exported: {exc}")
            log.error("slides of %s: %s", entry["notebook"], exc)
            continue
        notes.append(f"slides: {made.name} (opens offline)")
    return notes


def _check_fields(item: dict[str, Any]) -> dict[str, Any]:
    fields = set(Result.__dataclass_fields__)
    return {key: value for key, value in item.items() if key in fields}
