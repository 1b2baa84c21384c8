"""Phase 3 checks through the Kubernetes API: 3.1 Shlink's configuration, 3.2 its pods and logs.

The ConfigMap ``shlink-config`` is read and judged against params and against
Shlink's documented variables; the Secrets come from ExternalSecrets, judged by
the ``Ready`` condition the operator writes and by the keys the target Secret
holds (values never read into results). The connection strings must name
Services and pods that exist. Pods, rollouts and logs come from the API. The
HTTP items (3.2.4-3.2.8, phase3.py) go through a port-forward to the Service.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from labkit.checks.base import Context, Outcome, cluster_for, implements
from labkit.checks.phases.cluster2 import pods_outcome
from labkit.cluster import rollout_status
from labkit.cluster.waits import condition_status
from labkit.errors import LabkitError

__all__: list[str] = []

CONFIG_MAP = "shlink-config"
ES_API = "external-secrets.io/v1"
SHLINK_LABELS = {"app.kubernetes.io/name": "shlink"}
# The Secret keys Shlink's Deployment reads (shlink-db-password, shlink-secrets).
SECRET_KEYS = {"DB_PASSWORD", "INITIAL_API_KEY"}
# Shlink's documented environment variables this lab may set (EnvVars enum, shlink.io docs),
# with the form each value must have when set.
_BOOL = re.compile(r"^(true|false)$")
KNOWN = {
    "DEFAULT_DOMAIN": re.compile(r"^[A-Za-z0-9.-]+(:\d+)?$"),
    "IS_HTTPS_ENABLED": _BOOL,
    "BASE_PATH": re.compile(r"^(/[^\s]*)?$"),
    "TIMEZONE": re.compile(r"^[A-Za-z_]+(/[A-Za-z_+-]+)*$"),
    "CACHE_NAMESPACE": re.compile(r"^\S+$"),
    "MEMORY_LIMIT": re.compile(r"^-?\d+[KMG]?$"),
    "LOGS_FORMAT": re.compile(r"^(console|json)$"),
    "TRUSTED_PROXIES": re.compile(r"^\S+$"),
    "DB_DRIVER": re.compile(r"^(mysql|maria|postgres|mssql|sqlite)$"),
    "DB_HOST": re.compile(r"^[A-Za-z0-9.-]+$"),
    "DB_PORT": re.compile(r"^\d{1,5}$"),
    "DB_NAME": re.compile(r"^\S+$"),
    "DB_USER": re.compile(r"^\S+$"),
    "DB_USE_ENCRYPTION": _BOOL,
    "REDIS_SERVERS": re.compile(r"^(tcp|tls|rediss?)://[^,\s]+(,(tcp|tls|rediss?)://[^,\s]+)*$"),
    "REDIS_SENTINEL_SERVICE": re.compile(r"^\S+$"),
    "REDIS_PUB_SUB_ENABLED": _BOOL,
    "DISABLE_IP_TRACKING": _BOOL,
    "SKIP_INITIAL_GEOLITE_DOWNLOAD": _BOOL,
    "AUTO_RESOLVE_TITLES": _BOOL,
    "DEFAULT_SHORT_CODES_LENGTH": re.compile(r"^\d+$"),
    "SHORT_URL_MODE": re.compile(r"^(strict|loose)$"),
    "MULTI_SEGMENT_SLUGS_ENABLED": _BOOL,
    "SHORT_URL_TRAILING_SLASH": _BOOL,
    "DELETE_SHORT_URL_THRESHOLD": re.compile(r"^\d+$"),
    "ANONYMIZE_REMOTE_ADDR": _BOOL,
    "REDIRECT_STATUS_CODE": re.compile(r"^(301|302|307|308)$"),
    "REDIRECT_CACHE_LIFETIME": re.compile(r"^\d+$"),
    "GEOLITE_LICENSE_KEY": re.compile(r"^\S+$"),
}
REQUIRED = ("DB_DRIVER", "DB_HOST", "DB_NAME", "DB_USER", "DEFAULT_DOMAIN", "REDIS_SERVERS")
_DB_ERRORS = re.compile(
    r"(Doctrine\\DBAL\\Exception\\ConnectionException|SQLSTATE\[08|could not connect to server|"
    r"connection to server .* failed|password authentication failed)",
    re.IGNORECASE,
)
_REDIS_ERRORS = re.compile(
    r"(Predis\\|RedisException|No sentinel server available|Connection refused.*:(6379|26379)|"
    r"Error while reading line from the server)",
    re.IGNORECASE,
)
_LOG_LINES = 300


def _config(context: Context) -> dict[str, Any] | None:
    namespace = context.lab.shlink.namespace
    return cluster_for(context).get("ConfigMap", CONFIG_MAP, namespace, api_version="v1")


def _missing_config(context: Context, expected: str) -> Outcome:
    where = f"ConfigMap {context.lab.shlink.namespace}/{CONFIG_MAP}"
    return Outcome.judge(False, expected, f"{where} does not exist", f"GET {where}")


@implements("3.1.1")
def config_map(context: Context) -> Outcome:
    """ConfigMap shlink-config holds the app's settings, agreeing with params."""
    lab = context.lab
    expected = f"ConfigMap {lab.shlink.namespace}/{CONFIG_MAP} with {', '.join(REQUIRED)}"
    found = _config(context)
    if found is None:
        return _missing_config(context, expected)
    values = found.get("data") or {}
    missing = [key for key in REQUIRED if not values.get(key)]
    wrong = [
        f"{key} {values.get(key)!r} (params {field}: {want!r})"
        for key, want, field in (
            ("DEFAULT_DOMAIN", lab.shlink.default_domain, "shlink.default_domain"),
            ("DB_NAME", lab.postgres.database, "postgres.database"),
            ("DB_USER", lab.postgres.user, "postgres.user"),
            ("REDIS_SENTINEL_SERVICE", lab.redis.master_name, "redis.master_name"),
        )
        if key in values and values.get(key) != want
    ]
    problems = [f"missing {missing}"] if missing else []
    return Outcome.judge(
        not missing and not wrong,
        expected + ", agreeing with params",
        "; ".join(problems + wrong) or f"{len(values)} keys, all present and as params say",
        f"GET ConfigMap {lab.shlink.namespace}/{CONFIG_MAP}",
    )


def _secret_names(context: Context) -> list[str]:
    """The Secrets the Shlink Deployment reads (env secretKeyRef and envFrom)."""
    deployment = cluster_for(context).get("Deployment", "shlink", context.lab.shlink.namespace)
    names: set[str] = set()
    spec = ((deployment or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    for container in spec.get("containers") or []:
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name"):
                names.add(str(ref["name"]))
        for source in container.get("envFrom") or []:
            if (source.get("secretRef") or {}).get("name"):
                names.add(str(source["secretRef"]["name"]))
    return sorted(names)


@implements("3.1.2")
def secrets_synced(context: Context) -> list[Outcome]:
    """Each ExternalSecret in Shlink's namespace is Ready (synced); its Secret holds the keys."""
    cluster = cluster_for(context)
    namespace = context.lab.shlink.namespace
    externals = cluster.list("ExternalSecret", namespace, api_version=ES_API)
    outcomes = []
    keys_seen: set[str] = set()
    for item in externals:
        name = str(item["metadata"]["name"])
        target = str(((item.get("spec") or {}).get("target") or {}).get("name") or name)
        ready = [
            c
            for c in (item.get("status") or {}).get("conditions") or []
            if c.get("type") == "Ready"
        ]
        condition = ready[0] if ready else {}
        secret = cluster.get("Secret", target, namespace, api_version="v1")
        keys = sorted((secret or {}).get("data") or {})
        keys_seen |= set(keys)
        wanted = [d.get("secretKey") for d in (item.get("spec") or {}).get("data") or []]
        missing = [k for k in wanted if k not in keys]
        outcomes.append(
            Outcome.judge(
                condition.get("status") == "True" and secret is not None and not missing,
                f"ExternalSecret {namespace}/{name} Ready=True; Secret {target} holds {wanted}",
                f"Ready={condition.get('status', 'absent')} ({condition.get('reason', '')}: "
                f"{condition.get('message', '')}); Secret {target} "
                + (f"keys {keys}" if secret is not None else "absent")
                + (f"; missing {missing}" if missing else ""),
                f"GET externalsecrets.external-secrets.io {namespace}/{name} status.conditions; "
                f"GET Secret {namespace}/{target} (keys only)",
                name,
            )
        )
    lacking = sorted(SECRET_KEYS - keys_seen)
    outcomes.append(
        Outcome.judge(
            bool(externals) and not lacking,
            f"database password and API key ({', '.join(sorted(SECRET_KEYS))}) synced into "
            f"{namespace}",
            f"{len(externals)} ExternalSecret(s); Secrets hold {sorted(keys_seen) or 'nothing'}"
            + (f"; missing {lacking}" if lacking else "")
            + f"; the Deployment reads {_secret_names(context) or 'no Secret'}",
            f"GET externalsecrets -n {namespace}",
            "credentials",
        )
    )
    return outcomes


def _host_port(entry: str) -> tuple[str, int]:
    parts = urlsplit(entry if "://" in entry else f"tcp://{entry}")
    return parts.hostname or "", parts.port or 0


def _service_of(context: Context, host: str) -> str:
    """Whether ``host`` (a cluster DNS name) names an existing Service or StatefulSet pod."""
    cluster = cluster_for(context)
    labels = host.split(".")
    if len(labels) >= 3 and labels[2] == "svc":  # service.namespace.svc...
        found = cluster.get("Service", labels[0], labels[1], api_version="v1")
        return f"Service {labels[1]}/{labels[0]} " + ("exists" if found else "absent")
    if len(labels) >= 4 and labels[3] == "svc":  # pod.service.namespace.svc...
        service = cluster.get("Service", labels[1], labels[2], api_version="v1")
        pod = cluster.get("Pod", labels[0], labels[2], api_version="v1")
        return (
            f"pod {labels[2]}/{labels[0]} {'exists' if pod else 'absent'} behind Service "
            f"{labels[1]} {'exists' if service else 'absent'}"
        )
    return f"{host} is not a cluster Service name"


@implements("3.1.3")
def connection_strings(context: Context) -> list[Outcome]:
    """DB_HOST is PGO's primary Service; REDIS_SERVERS are the Redis pods' Sentinels."""
    lab = context.lab
    found = _config(context)
    if found is None:
        return [_missing_config(context, "connection strings")]
    values = found.get("data") or {}
    primary = f"{lab.postgres.cluster_name}-primary.{lab.postgres.namespace}.svc"
    host = str(values.get("DB_HOST", ""))
    db_seen = _service_of(context, host) if host else "DB_HOST unset"
    database = Outcome.judge(
        host.startswith(primary)
        and db_seen.endswith("exists")
        and str(values.get("DB_PORT", "5432")) == "5432",
        f"DB_HOST {primary}[.cluster.local], port 5432, the Service existing",
        f"DB_HOST {host!r}, DB_PORT {values.get('DB_PORT', '(default)')}: {db_seen}",
        f"ConfigMap {lab.shlink.namespace}/{CONFIG_MAP} data.DB_HOST",
        "postgres",
    )
    servers = [s for s in str(values.get("REDIS_SERVERS", "")).split(",") if s.strip()]
    seen, ok = [], bool(servers) and values.get("REDIS_SENTINEL_SERVICE") == lab.redis.master_name
    for entry in servers:
        name, port = _host_port(entry.strip())
        where = _service_of(context, name)
        ok = ok and port == 26379 and name.split(".")[2:3] == [lab.redis.namespace]
        ok = ok and "absent" not in where and "not a cluster" not in where
        seen.append(f"{name}:{port} ({where})")
    redis = Outcome.judge(
        ok and len(servers) == lab.redis.sentinels,
        f"{lab.redis.sentinels} Sentinels (port 26379) of pods in {lab.redis.namespace}, "
        f"REDIS_SENTINEL_SERVICE {lab.redis.master_name}",
        "; ".join(seen)
        or "REDIS_SERVERS unset"
        + f"; REDIS_SENTINEL_SERVICE {values.get('REDIS_SENTINEL_SERVICE')!r}",
        f"ConfigMap {lab.shlink.namespace}/{CONFIG_MAP} data.REDIS_SERVERS",
        "redis",
    )
    return [database, redis]


@implements("3.1.4")
def config_documented(context: Context) -> Outcome:
    """Every key is one of Shlink's documented variables, with a value of its documented form."""
    found = _config(context)
    expected = "only Shlink's documented variables, each value of its documented form"
    if found is None:
        return _missing_config(context, expected)
    values = found.get("data") or {}
    unknown = sorted(key for key in values if key.removesuffix("_FILE") not in KNOWN)
    malformed = [
        f"{key}={value!r}"
        for key, value in sorted(values.items())
        if key in KNOWN and not KNOWN[key].match(str(value).strip())
    ]
    problems = ([f"unknown {unknown}"] if unknown else []) + (
        [f"malformed {malformed}"] if malformed else []
    )
    return Outcome.judge(
        not problems,
        expected,
        "; ".join(problems) or f"{len(values)} keys, all documented and well formed",
        f"ConfigMap {context.lab.shlink.namespace}/{CONFIG_MAP} against Shlink's EnvVars",
    )


# -- 3.2 Shlink deployment ------------------------------------------------------------------


def _shlink_pods(context: Context) -> list[dict[str, Any]]:
    namespace = context.lab.shlink.namespace
    return cluster_for(context).list("Pod", namespace, labels=SHLINK_LABELS)


@implements("3.2.1")
def shlink_pods(context: Context) -> list[Outcome]:
    """The shlink Deployment rolled out with params' replicas; its pods Running and Ready."""
    lab = context.lab
    namespace = lab.shlink.namespace
    deployment = cluster_for(context).get("Deployment", "shlink", namespace)
    done, seen = rollout_status(deployment)
    replicas = int(((deployment or {}).get("spec") or {}).get("replicas", 0))
    pods = _shlink_pods(context)
    return [
        Outcome.judge(
            done and replicas == lab.shlink.replicas,
            f"{lab.shlink.replicas} replicas (shlink.replicas), all ready",
            f"{replicas} wanted; {seen}",
            f"GET Deployment {namespace}/shlink",
            "deployment",
        ),
        pods_outcome(
            pods,
            f"shlink pods in {namespace} Running and Ready",
            f"GET pods -n {namespace} -l app.kubernetes.io/name=shlink",
        ),
    ]


def _logs_outcome(context: Context, errors: re.Pattern[str], what: str) -> Outcome:
    cluster = cluster_for(context)
    namespace = context.lab.shlink.namespace
    pods = _shlink_pods(context)
    found: list[str] = []
    read = 0
    for pod in pods:
        name = str(pod["metadata"]["name"])
        try:
            text = cluster.logs(name, namespace, tail_lines=_LOG_LINES)
        except LabkitError as exc:
            found.append(f"{name}: log unreadable ({exc})")
            continue
        lines = text.splitlines()
        read += len(lines)
        found += [f"{name}: {line.strip()[:300]}" for line in lines if errors.search(line)]
    not_ready = [str(p["metadata"]["name"]) for p in pods if condition_status(p, "Ready") != "True"]
    observed = (
        "; ".join(found[:5]) + (f" (+{len(found) - 5} more)" if len(found) > 5 else "")
        if found
        else f"{read} lines from {len(pods)} pod(s), no {what} error"
    )
    if not_ready:
        observed += f"; not Ready: {not_ready}"
    return Outcome.judge(
        bool(pods) and not found and not not_ready,
        f"every shlink pod Ready, no {what} connection error in its last {_LOG_LINES} lines",
        observed if pods else f"no shlink pods in {namespace}",
        f"GET pods/log -n {namespace} tailLines={_LOG_LINES}",
    )


@implements("3.2.2")
def database_connection_logged(context: Context) -> Outcome:
    """No pod's log shows a failed database connection, and every pod is Ready."""
    return _logs_outcome(context, _DB_ERRORS, "database")


@implements("3.2.3")
def redis_connection_logged(context: Context) -> Outcome:
    """No pod's log shows a failed Redis/Sentinel connection, and every pod is Ready."""
    return _logs_outcome(context, _REDIS_ERRORS, "Redis")
