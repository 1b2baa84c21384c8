"""The sandbox observes itself: Prometheus, Alertmanager and exporters from Debian packages.

What runs (each optional: a program that is not installed is reported as skipped with why,
and the rest of the sandbox comes up regardless):

* ``redis-exporter`` (``prometheus-redis-exporter``), one process scraping every Redis data
  node through its multi-target ``/scrape?target=`` endpoint;
* ``postgres-exporter-<port>`` (``prometheus-postgres-exporter``) for the primary and the
  standby, with pgMonitor's ``ccp_is_in_recovery_status`` as a custom query (the alert rules
  use it on the cluster, where PGO's exporter provides it);
* ``node-exporter-<node>`` (``prometheus-node-exporter``) inside each node's network
  namespace, on the node's address (isolated nodes only, i.e. as root);
* ``alertmanager`` (``prometheus-alertmanager``), clustering off, no receivers that send;
* ``prometheus`` scraping all of them, the shortener's ``/metrics`` and itself, with the alert
  rules of ``manifests/monitoring/`` (extracted from the PrometheusRule the cluster loads).

Series carry the labels the cluster's carry where the rules need them (``namespace="redis"``,
``namespace="postgres"``, ``namespace="shlink"``), so one set of rules and PromQL serves both.
Everything listens on loopback (node exporters on the sandbox's own bridge).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from labkit.errors import ConfigError, LabkitError
from labkit.params import Lab, SandboxMonitoring
from labkit.sandbox import processes

__all__ = [
    "Component",
    "alertmanager_url",
    "components",
    "monitoring_skipped",
    "monitoring_status",
    "prometheus_url",
    "start_monitoring",
    "stop_monitoring",
]

_PROGRAMS = {
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "redis-exporter": "prometheus-redis-exporter",
    "postgres-exporter": "prometheus-postgres-exporter",
    "node-exporter": "prometheus-node-exporter",
}
# pgMonitor's convention, which the cluster's alert uses: 2 for a primary, 1 in recovery.
_POSTGRES_QUERIES = {
    "ccp_is_in_recovery": {
        "query": "SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 2 END AS status",
        "master": True,
        "metrics": [
            {
                "status": {
                    "usage": "GAUGE",
                    "description": "2 for a primary, 1 for a server in recovery (pgMonitor)",
                }
            }
        ],
    },
    # Server time per transaction (phase 6): time backends spent executing, and transactions.
    "labkit_pg_database": {
        "query": "SELECT datname, active_time / 1000.0 AS active_seconds_total, "
        "xact_commit + xact_rollback AS transactions_total "
        "FROM pg_stat_database WHERE datname = current_database()",
        "master": True,
        "metrics": [
            {"datname": {"usage": "LABEL", "description": "database"}},
            {
                "active_seconds_total": {
                    "usage": "COUNTER",
                    "description": "time backends spent executing statements (active_time)",
                }
            },
            {
                "transactions_total": {
                    "usage": "COUNTER",
                    "description": "transactions committed or rolled back",
                }
            },
        ],
    },
}
_NODE_COLLECTORS = ("cpu", "meminfo", "loadavg", "netdev", "diskstats", "filesystem", "uname")


@dataclass(frozen=True)
class Component:
    """One monitoring process: how to start it, where it answers, what it scrapes as."""

    name: str
    kind: str
    program: str  # the Debian package's binary
    argv: list[str]
    url: str  # base URL it answers on
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    netns: str | None = None  # run inside this network namespace (node exporters)
    role: str = ""
    files: dict[Path, str] = field(default_factory=dict)  # written (mode 600) before start


def _settings(lab: Lab) -> SandboxMonitoring:
    if lab.sandbox is None:
        raise ConfigError(f"lab {lab.name} has no 'sandbox' section; sandbox monitoring needs one")
    return lab.sandbox.monitoring


def _binary(program: str) -> str | None:
    return shutil.which(program) or next(
        (str(p) for p in (Path("/usr/bin") / program, Path("/usr/sbin") / program) if p.is_file()),
        None,
    )


def _home(state_dir: Path) -> Path:
    return state_dir / "monitoring"


def prometheus_url(lab: Lab) -> str:
    """Where the sandbox's Prometheus answers (whether or not it runs)."""
    return f"http://127.0.0.1:{_settings(lab).prometheus_port}"


def alertmanager_url(lab: Lab) -> str:
    """Where the sandbox's Alertmanager answers (whether or not it runs)."""
    return f"http://127.0.0.1:{_settings(lab).alertmanager_port}"


def _redis_exporter(lab: Lab, state_dir: Path, binary: str) -> Component:
    port = _settings(lab).redis_exporter_port
    files: dict[Path, str] = {}
    argv = [
        binary,
        "-web.listen-address",
        f"127.0.0.1:{port}",
        "-redis.addr",
        f"redis://{lab.redis.host}:{lab.redis.port}",
    ]
    if lab.redis.password is not None:
        # Multi-target scrapes take their passwords from a file: one entry per data node.
        password = lab.secret(lab.redis.password).reveal()
        path = _home(state_dir) / "redis-passwords.json"
        files[path] = json.dumps(
            {
                f"{scheme}{lab.redis.host}:{p}": password
                for p in _redis_ports(lab)
                for scheme in ("", "redis://")  # as Prometheus passes ?target=, and as a URI
            }
        )
        argv += ["-redis.password-file", str(path)]
    return Component(
        "redis-exporter",
        "redis-exporter",
        _PROGRAMS["redis-exporter"],
        argv,
        f"http://127.0.0.1:{port}",
        "/health",
        role="exporter",
        files=files,
    )


def _redis_ports(lab: Lab) -> list[int]:
    return [lab.redis.port, *lab.redis.replica_ports]


def _postgres_exporters(lab: Lab, state_dir: Path, binary: str) -> list[Component]:
    settings = _settings(lab)
    queries = _home(state_dir) / "postgres-queries.yaml"
    env = {"DATA_SOURCE_USER": lab.postgres.user}
    reference = lab.postgres.password
    if reference.file is not None:
        env["DATA_SOURCE_PASS_FILE"] = str(lab.path(reference.file))
    else:
        env["DATA_SOURCE_PASS"] = lab.secret(reference).reveal()
    servers = [(lab.postgres.port, "primary")]
    if lab.postgres.standby_port:
        servers.append((lab.postgres.standby_port, "standby"))
    found = []
    for (server_port, role), port in zip(servers, settings.postgres_exporter_ports, strict=False):
        found.append(
            Component(
                f"postgres-exporter-{server_port}",
                "postgres-exporter",
                _PROGRAMS["postgres-exporter"],
                [
                    binary,
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--extend.query-path={queries}",
                    "--disable-settings-metrics",
                    "--log.level=warn",
                ],
                f"http://127.0.0.1:{port}",
                "/",
                env={
                    **env,
                    "DATA_SOURCE_URI": (
                        f"{lab.postgres.host}:{server_port}/{lab.postgres.database}"
                        "?sslmode=disable&connect_timeout=2"
                    ),
                },
                role=role,
                files={queries: yaml.safe_dump(_POSTGRES_QUERIES, sort_keys=False)},
            )
        )
    return found


def _node_exporters(lab: Lab, state_dir: Path, binary: str) -> tuple[list[Component], str]:
    from labkit.sandbox import nodes  # noqa: PLC0415 - optional part, imported when used

    settings = _settings(lab)
    rows = {row["name"]: row for row in nodes.nodes_status(lab, state_dir)}
    found = []
    for node in lab.nodes:
        row = rows.get(node.name, {})
        if not row.get("isolated"):
            continue
        argv = [
            "ip", "netns", "exec", nodes.netns_name(lab, node), binary,
            f"--web.listen-address={node.address}:{settings.node_exporter_port}",
            "--collector.disable-defaults",
            *(f"--collector.{name}" for name in _NODE_COLLECTORS),
            "--log.level=warn",
        ]  # fmt: skip
        found.append(
            Component(
                f"node-exporter-{node.name}",
                "node-exporter",
                _PROGRAMS["node-exporter"],
                argv,
                f"http://{node.address}:{settings.node_exporter_port}",
                "/",
                netns=nodes.netns_name(lab, node),
                role=node.name,
            )
        )
    why = "" if found else "no isolated node (node exporters run in the nodes' namespaces: root)"
    return found, why


def _alertmanager(lab: Lab, state_dir: Path, binary: str) -> Component:
    home = _home(state_dir)
    config = home / "alertmanager.yml"
    text = (
        "# Written by labkit: alerts are kept and shown, never sent anywhere.\n"
        + yaml.safe_dump(
            {
                "route": {
                    "receiver": "lab",
                    "group_by": ["alertname"],
                    "group_wait": "1s",
                    "group_interval": "5s",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "lab"}],
            },
            sort_keys=False,
        )
    )
    port = _settings(lab).alertmanager_port
    return Component(
        "alertmanager",
        "alertmanager",
        _PROGRAMS["alertmanager"],
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={home / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: one instance, loopback only
            "--log.level=warn",
        ],
        alertmanager_url(lab),
        "/-/ready",
        files={config: text},
    )


def _prometheus(
    lab: Lab, state_dir: Path, binary: str, scraped: list[Component], rules: str | None
) -> Component:
    home = _home(state_dir)
    config = home / "prometheus.yml"
    files: dict[Path, str] = {}
    if rules is not None:
        files[home / "alerts.rules.yaml"] = rules
    text = _prometheus_config(lab, scraped, [str(path) for path in files])
    files[config] = text
    return Component(
        "prometheus",
        "prometheus",
        _PROGRAMS["prometheus"],
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{_settings(lab).prometheus_port}",
            "--storage.tsdb.retention.time=2d",
            "--log.level=warn",
        ],
        prometheus_url(lab),
        "/-/ready",
        env={"LABKIT_CONFIG_DIGEST": _digest(files)},
        files=files,
    )


def _digest(files: dict[Path, str]) -> str:
    return hashlib.sha256("\0".join(files.values()).encode()).hexdigest()[:16]


def _interval(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms"


def _prometheus_config(lab: Lab, scraped: list[Component], rules: list[str]) -> str:
    settings = _settings(lab)
    jobs: list[dict[str, Any]] = [
        _job("prometheus", [prometheus_url(lab)], {"namespace": "monitoring"}),
        _job("shlink", [lab.shlink.base_url], {"namespace": "shlink"}),
    ]
    by_kind: dict[str, list[Component]] = {}
    for component in scraped:
        by_kind.setdefault(component.kind, []).append(component)
    if "alertmanager" in by_kind:
        jobs.append(_job("alertmanager", [alertmanager_url(lab)], {"namespace": "monitoring"}))
    for exporter in by_kind.get("redis-exporter", []):
        job = _job("redis", [f"{lab.redis.host}:{p}" for p in _redis_ports(lab)], {})
        job["metrics_path"] = "/scrape"
        job["static_configs"][0]["labels"] = {"namespace": "redis"}
        job["relabel_configs"] = [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": urlsplit(exporter.url).netloc},
        ]
        jobs.append(job)
    postgres = by_kind.get("postgres-exporter", [])
    if postgres:
        jobs.append(
            {
                "job_name": "postgres",
                "static_configs": [
                    {
                        "targets": [urlsplit(c.url).netloc],
                        "labels": {"namespace": "postgres", "component": c.name, "role": c.role},
                    }
                    for c in postgres
                ],
            }
        )
    node_exporters = by_kind.get("node-exporter", [])
    if node_exporters:
        jobs.append(
            {
                "job_name": "node",
                "static_configs": [
                    {"targets": [urlsplit(c.url).netloc], "labels": {"node": c.role}}
                    for c in node_exporters
                ],
            }
        )
    document: dict[str, Any] = {
        "global": {
            "scrape_interval": _interval(settings.scrape_interval_s),
            "scrape_timeout": _interval(min(settings.scrape_interval_s, 5.0)),
            "evaluation_interval": _interval(settings.evaluation_interval_s),
            "external_labels": {"lab": lab.name},
        },
        "rule_files": rules,
        "scrape_configs": jobs,
    }
    if "alertmanager" in by_kind:
        document["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{settings.alertmanager_port}"]}]}
            ]
        }
    return "# Written by labkit from the sandbox's params.\n" + yaml.safe_dump(
        document, sort_keys=False
    )


def _job(name: str, urls: list[str], labels: dict[str, str]) -> dict[str, Any]:
    targets = [urlsplit(url).netloc or url for url in urls]
    entry: dict[str, Any] = {"targets": targets}
    if labels:
        entry["labels"] = labels
    return {"job_name": name, "static_configs": [entry]}


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def components(lab: Lab, state_dir: Path) -> tuple[list[Component], list[dict[str, str]]]:
    """What would run (in start order) and what is skipped, each with the reason."""
    settings = _settings(lab)
    skipped: list[dict[str, str]] = []
    if not settings.enabled:
        return [], [{"name": "monitoring", "reason": "sandbox.monitoring.enabled is false"}]

    def binary(kind: str) -> str | None:
        found = _binary(_PROGRAMS[kind])
        if found is None:
            skipped.append(
                {
                    "name": kind,
                    "reason": f"{_PROGRAMS[kind]} not installed "
                    f"(apt-get install -y {_package(kind)})",
                }
            )
        return found

    found: list[Component] = []
    if program := binary("redis-exporter"):
        found.append(_redis_exporter(lab, state_dir, program))
    password = lab.postgres.password.file
    if password is not None and not lab.path(password).is_file():
        skipped.append(
            {"name": "postgres-exporter", "reason": f"no PostgreSQL password at {password} yet"}
        )
    elif program := binary("postgres-exporter"):
        found += _postgres_exporters(lab, state_dir, program)
    if program := binary("node-exporter"):
        node_exporters, why = _node_exporters(lab, state_dir, program)
        found += node_exporters
        if why:
            skipped.append({"name": "node-exporter", "reason": why})
    if program := binary("alertmanager"):
        found.append(_alertmanager(lab, state_dir, program))
    if program := binary("prometheus"):
        rules: str | None = None
        try:
            # Deferred: the manifests package loads jsonschema (about a second), and every
            # `labkit` command imports this module through the sandbox's supervisor.
            from labkit.manifests.rules import rule_file_text  # noqa: PLC0415

            rules = rule_file_text()
        except ConfigError as exc:  # no manifests beside this labkit: no alert rules to load
            skipped.append({"name": "alert-rules", "reason": str(exc)})
        found.append(_prometheus(lab, state_dir, program, list(found), rules))
    elif found:
        skipped.append({"name": "exporters", "reason": "started, but no Prometheus scrapes them"})
    return found, skipped


def _package(kind: str) -> str:
    return "prometheus" if kind == "prometheus" else _PROGRAMS[kind]


def _managed(state_dir: Path, name: str) -> processes.Managed:
    return processes.Managed(
        name, state_dir / "run" / f"{name}.pid", state_dir / "logs" / f"{name}.log"
    )


def _answers(component: Component) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            response = httpx.get(component.url + component.ready_path, timeout=2.0, trust_env=False)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    return ready


def _scraped_all(component: Component) -> Callable[[], bool]:
    config = yaml.safe_load(
        next(t for p, t in component.files.items() if p.name == "prometheus.yml")
    )
    expected = sum(
        len(entry["targets"]) for job in config["scrape_configs"] for entry in job["static_configs"]
    )

    def ready() -> bool:
        try:
            response = httpx.get(
                component.url + "/api/v1/targets",
                params={"state": "active"},
                timeout=2.0,
                trust_env=False,
            )
            targets = response.json()["data"]["activeTargets"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return False
        return len(targets) >= expected and all(t.get("health") != "unknown" for t in targets)

    return ready


def start_monitoring(lab: Lab, state_dir: Path, progress: Callable[[str], None] = print) -> None:
    """Start every installed monitoring component not running yet; wait until each answers."""
    running, skipped = components(lab, state_dir)
    for entry in skipped:
        progress(f"monitoring: {entry['name']} skipped: {entry['reason']}")
    timeout_s = lab.sandbox.startup_timeout_s if lab.sandbox else 60.0
    for component in running:
        lab.require_allowed(urlsplit(component.url).hostname or "")
        for path, text in component.files.items():
            _write_private(path, text)
        managed = _managed(state_dir, component.name)
        pid = managed.pid
        if pid is None:
            if component.kind == "prometheus":
                # Fresh storage: series of an earlier run (a Redis run_id, say) would otherwise
                # linger for the 5-minute lookback with no stale marker and double count.
                shutil.rmtree(_home(state_dir) / "prometheus-data", ignore_errors=True)
            progress(f"monitoring: starting {component.name} on {component.url}")
            processes.start(component.name, component.argv, state_dir, env=component.env)
        elif component.kind == "prometheus" and _config_changed(state_dir, component):
            os.kill(pid, signal.SIGHUP)  # our own process (pid and start time checked): reload
        _remember_config(state_dir, component)
        processes.poll_until(
            f"{component.name} on {component.url}", _answers(component), timeout_s, managed
        )
        if component.kind == "prometheus":
            # Ready means every target scraped once: a check right after `up` sees real health.
            processes.poll_until(
                f"{component.name}: first scrape of every target",
                _scraped_all(component),
                timeout_s,
                managed,
                interval_s=0.25,
            )


def _digest_file(state_dir: Path, component: Component) -> Path:
    return _home(state_dir) / f"{component.name}.digest"


def _config_changed(state_dir: Path, component: Component) -> bool:
    digest = component.env.get("LABKIT_CONFIG_DIGEST", "")
    try:
        return _digest_file(state_dir, component).read_text() != digest
    except FileNotFoundError:
        return True


def _remember_config(state_dir: Path, component: Component) -> None:
    if "LABKIT_CONFIG_DIGEST" in component.env:
        _digest_file(state_dir, component).write_text(component.env["LABKIT_CONFIG_DIGEST"])


def _names(lab: Lab) -> list[str]:
    """Every name a monitoring process of this lab can have (running or not)."""
    names = ["prometheus", "alertmanager", "redis-exporter"]
    names += [
        f"postgres-exporter-{port}" for port in (lab.postgres.port, lab.postgres.standby_port)
    ]
    names += [f"node-exporter-{node.name}" for node in lab.nodes]
    return names


def stop_monitoring(lab: Lab, state_dir: Path) -> None:
    """Stop every monitoring process (Prometheus first, so it records no false alarms)."""
    problems = []
    for name in _names(lab):
        try:
            processes.stop(_managed(state_dir, name))
        except LabkitError as exc:
            problems.append(str(exc))
    if problems:
        raise LabkitError("sandbox monitoring: " + "; ".join(problems))


def monitoring_status(lab: Lab, state_dir: Path) -> list[dict[str, Any]]:
    """A status entry per monitoring process started (or crashed); skipped ones are not here."""
    entries = []
    by_name = {c.name: c for c in components(lab, state_dir)[0]} if _settings(lab).enabled else {}
    for name in _names(lab):
        managed = _managed(state_dir, name)
        if managed.pid is None and processes.read_pid(managed.pidfile) is None:
            continue  # never started (or stopped cleanly): not part of this sandbox now
        component = by_name.get(name)
        url = component.url if component else ""
        entry = processes.describe(
            managed,
            name.rsplit("-", 1)[0] if component is None else component.kind,
            url,
            component.role if component else None,
        )
        entry["url"] = url
        if entry["pid"] is not None and component is not None:
            entry["healthy"] = _answers(component)()
            entry["detail"] = f"GET {component.ready_path} " + (
                "200" if entry["healthy"] else "not 200"
            )
        entries.append(entry)
    return entries


def monitoring_skipped(lab: Lab, state_dir: Path) -> list[dict[str, str]]:
    """Each monitoring component this sandbox does not run, with the reason."""
    return components(lab, state_dir)[1]
