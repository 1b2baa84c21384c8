"""``labkit doctor``: collect the evidence a troubleshooter asks for first, secrets masked.

Read-only. On the sandbox: every component's status (pid, role, health), the
recent error and failover lines of each component's log (plus a tail of each
log), and the data plane as phase 2 sees it: each Redis node's replication role
and link, each Sentinel's master, PostgreSQL's recovery state and streaming
standbys, the service's health. Each finding names what looks wrong. On a
cluster the Events and the logs of failing pods come through the cluster layer
(no such step in it yet): skipped with the reason. Everything written is redacted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from labkit.errors import LabkitError
from labkit.params import Lab
from labkit.secrets import Secret, redact

__all__ = ["Report", "collect", "default_folder", "write"]

_ERROR = re.compile(
    r"\b(error|fatal|panic|traceback|exception|failed|refused|denied)\b"
    r"|[+-](sdown|odown|switch-master|failover-\w+|try-failover)\b",
    re.IGNORECASE,
)
# What reading a source can raise: each becomes that source's "error" fact.
_FAILURES = (LabkitError, redis.RedisError, psycopg.Error, httpx.HTTPError, OSError, ValueError)
_RECENT = 20
_TAIL = 200
_CLUSTER_REASON = (
    "Kubernetes Events and the logs of failing pods come through labkit's cluster layer "
    "(labkit/cluster/), which has no such step yet; not collected"
)


@dataclass
class Report:
    """What doctor saw: status, findings, recent errors per component, data-plane facts."""

    lab: str
    kind: str
    at: str
    components: list[dict[str, Any]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)
    data_plane: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    folder: str = ""

    @property
    def healthy(self) -> bool:
        """True when nothing looked wrong."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, redacted (doctor.json)."""
        data: dict[str, Any] = redact(dict(self.__dict__))
        return data

    def text(self) -> str:
        """A terminal summary: findings first, then per component, then what was skipped."""
        lines = [f"doctor: lab {self.lab} ({self.kind}) at {self.at}"]
        lines += [f"  ! {finding}" for finding in self.findings] or ["  no findings"]
        for entry in self.components:
            mark = "ok" if entry.get("healthy") else "!!"
            lines.append(
                f"  [{mark}] {entry.get('name', '?'):<20} {entry.get('role') or '':<10} "
                f"{entry.get('detail', '')}"
            )
        for name, found in self.errors.items():
            lines.append(f"  {name}: {len(found)} recent error/failover line(s), last: {found[-1]}")
        lines += [f"  skipped: {reason}" for reason in self.skipped]
        if self.folder:
            lines.append(f"  evidence in {self.folder}")
        text: str = redact("\n".join(lines))
        return text

    def _repr_html_(self) -> str:
        from labkit.report import doctor_html  # noqa: PLC0415

        return doctor_html(self.to_dict())


def _register_secrets(lab: Lab, state: Path | None) -> None:
    """Resolve every secret the lab and its sandbox hold, so ``redact`` masks them."""
    for reference in lab.secret_refs().values():
        if reference.kind == "kubernetes":
            continue
        try:
            lab.secret(reference)
        except LabkitError:
            continue  # not resolvable here: it cannot be in what we read either
    if state is not None:
        for path in (state / "postgres" / "secrets").glob("*"):
            if path.is_file() and not path.name.startswith("pgpass"):
                Secret(path.read_text().strip(), f"file {path}")


def _errors(logfile: Path) -> list[str]:
    try:
        lines = logfile.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    found: list[str] = redact([line.strip() for line in lines if _ERROR.search(line)][-_RECENT:])
    return [line[:300] for line in found]


def _probe(facts: dict[str, Any], name: str, read: Callable[[], Any]) -> None:
    """Record what ``read`` returns under ``name``; an error is recorded, not raised."""
    try:
        facts[name] = read()
    except _FAILURES as exc:  # every failure is evidence here; none may stop doctor
        facts[name] = {"error": f"{type(exc).__name__}: {exc}"}


def _redis_facts(lab: Lab) -> dict[str, Any]:
    from labkit import stores  # noqa: PLC0415

    facts: dict[str, Any] = {}
    for port in [lab.redis.port, *lab.redis.replica_ports]:

        def replication(port: int = port) -> dict[str, Any]:
            endpoint = stores.Endpoint(lab.redis.host, port)
            with closing(stores.lab_redis(lab, endpoint, timeout_s=1.0)) as client:
                info = client.info("replication")
            keys = ("role", "master_port", "master_link_status", "connected_slaves")
            return {key: info[key] for key in keys if key in info}

        _probe(facts, f"redis-{port}", replication)
    for port in lab.redis.sentinel_ports:

        def master(port: int = port) -> dict[str, Any]:
            endpoint = stores.Endpoint(lab.redis.host, port)
            seen = stores.sentinel_view(endpoint, lab.redis.master_name, timeout_s=1.0)
            return {"master": [seen.host, seen.port] if seen else None}

        _probe(facts, f"sentinel-{port}", master)
    return facts


def _postgres_facts(lab: Lab, state: Path) -> dict[str, Any]:
    from labkit.sandbox.postgres import superuser_connection  # noqa: PLC0415

    facts: dict[str, Any] = {}
    roles = ["primary", "standby"] if lab.postgres.standby_port is not None else ["primary"]
    for role in roles:

        def read(role: str = role) -> dict[str, Any]:
            with closing(superuser_connection(lab, state, role)) as connection:
                recovery = connection.execute("SELECT pg_is_in_recovery()").fetchone()
                standbys = connection.execute(
                    "SELECT application_name, state, sync_state, replay_lag::text "
                    "FROM pg_stat_replication"
                ).fetchall()
                timeline = connection.execute(
                    "SELECT timeline_id FROM pg_control_checkpoint()"
                ).fetchone()
            return {
                "in_recovery": bool(recovery and recovery[0]),
                "timeline": timeline[0] if timeline else None,
                "standbys": [
                    {"name": s[0], "state": s[1], "sync": s[2], "replay_lag": s[3]}
                    for s in standbys
                ],
            }

        _probe(facts, f"postgres-{role}", read)
    return facts


def _service_facts(lab: Lab) -> dict[str, Any]:
    from labkit.shlink import ShlinkClient  # noqa: PLC0415

    facts: dict[str, Any] = {}

    def health() -> dict[str, Any]:
        with ShlinkClient.from_lab(lab, timeout_s=3.0) as client:
            return client.health()

    _probe(facts, "shlink-health", health)
    return facts


def _findings(report: Report, lab: Lab) -> list[str]:
    found = [
        f"{entry.get('name')}: not healthy ({entry.get('detail') or 'no detail'})"
        for entry in report.components
        if not entry.get("healthy")
    ]
    plane = report.data_plane
    found += [f"{name}: {facts['error']}" for name, facts in plane.items() if "error" in facts]
    masters = {
        tuple(facts["master"]) if facts.get("master") else None
        for name, facts in plane.items()
        if name.startswith("sentinel-") and "error" not in facts
    }
    if len(masters) > 1:
        found.append(f"Sentinels disagree on the master of {lab.redis.master_name}: {masters}")
    for name, facts in plane.items():
        if facts.get("role") == "slave" and facts.get("master_link_status") != "up":
            found.append(f"{name}: replica link to its master is {facts.get('master_link_status')}")
        if name.startswith("postgres-") and facts.get("in_recovery") is False:
            streaming = [s for s in facts.get("standbys", []) if s["state"] == "streaming"]
            if lab.postgres.standby_port is not None and not streaming:
                found.append(f"{name}: primary with no streaming standby")
    health = plane.get("shlink-health", {})
    if "error" not in health and health.get("status") != "pass":
        found.append(
            f"shlink /rest/health: {health.get('status')} (HTTP {health.get('httpStatus')})"
        )
    return found


def collect(lab: Lab) -> Report:
    """Read everything doctor shows; changes nothing."""
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report = Report(lab.name, lab.kind, at)
    if lab.kind != "sandbox":
        _register_secrets(lab, None)
        report.skipped.append(_CLUSTER_REASON)
        return report
    from labkit.sandbox import Sandbox, state_dir_of  # noqa: PLC0415

    state = state_dir_of(lab)
    _register_secrets(lab, state)
    status = Sandbox(lab).status()
    report.components = status["components"]
    for logfile in sorted((state / "logs").glob("*.log")):
        found = _errors(logfile)
        if found:
            report.errors[logfile.stem] = found
    report.data_plane = {
        **_redis_facts(lab),
        **_postgres_facts(lab, state),
        **_service_facts(lab),
    }
    report.skipped.append("cluster Events and pod logs: the sandbox has no Kubernetes API")
    report.data_plane = redact(report.data_plane)
    report.findings = _findings(report, lab)
    return report


def _tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-_TAIL:]
    return "\n".join(lines) + "\n"


def write(lab: Lab, report: Report, folder: Path) -> Path:
    """Write ``doctor.json``, ``doctor.txt`` and redacted log tails into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    report.folder = str(folder)
    if lab.kind == "sandbox":
        from labkit.sandbox import state_dir_of  # noqa: PLC0415

        logs = folder / "logs"
        logs.mkdir(exist_ok=True)
        for logfile in sorted((state_dir_of(lab) / "logs").glob("*.log")):
            (logs / logfile.name).write_text(redact(_tail(logfile)), encoding="utf-8")
    (folder / "doctor.json").write_text(
        json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8"
    )
    (folder / "doctor.txt").write_text(report.text() + "\n", encoding="utf-8")
    return folder


def default_folder(lab: Lab) -> Path:
    """The run folder's ``doctor/`` under ``labkit run``; else ``outputs/doctor-<time>-<lab>``."""
    from labkit.results import run_dir  # noqa: PLC0415
    from labkit.run import REPOSITORY  # noqa: PLC0415

    folder = run_dir()
    if folder is not None:
        return folder / "doctor"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return REPOSITORY / "outputs" / f"doctor-{stamp}-{lab.name}"
