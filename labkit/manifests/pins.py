"""Pins: what the manifests say about versions, sizes and policies equals what params say."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.manifests.documents import (
    Document,
    Problem,
    field_value,
    problem,
    seconds,
    sources,
)
from labkit.params import Lab

__all__ = ["check_pins"]


class _Pins:
    """Collects pin mismatches: each compares one manifest field with one params value."""

    def __init__(self, documents: list[Document]) -> None:
        self.documents = documents
        self.problems: list[Problem] = []

    def find(self, predicate: Callable[[Document], bool]) -> list[Document]:
        """Documents that satisfy ``predicate``."""
        return [document for document in self.documents if predicate(document)]

    def one(self, kind: str, namespace: str, name: str, why: str) -> Document | None:
        """The document ``kind namespace/name``, or None and a problem saying it is missing."""
        found = self.find(
            lambda d: d.kind == kind and d.name == name and d.namespace in {namespace, ""}
        )
        if not found:
            self.problems.append(
                Problem(
                    "manifests/",
                    "(missing)",
                    kind,
                    f"no {kind} {namespace}/{name}; {why}",
                )
            )
            return None
        return found[0]

    def equal(self, document: Document, field: str, seen: Any, expected: Any, params: str) -> None:
        """Record a problem unless ``seen == expected``."""
        if seen != expected:
            self.problems.append(
                problem(
                    document, field, f"{seen!r} but params {params} is {expected!r}; align them"
                )
            )


def check_pins(documents: list[Document], lab: Lab, root: Path) -> list[Problem]:
    """Every pin that disagrees with ``lab``, and every document params expect but is missing."""
    pins = _Pins(documents)
    _pin_applications(pins, lab, root)
    _pin_postgres(pins, lab)
    _pin_redis(pins, lab)
    _pin_shlink(pins, lab)
    _pin_secrets(pins, lab)
    _pin_istio(pins, lab)
    _pin_observability(pins, lab)
    return pins.problems


def _image_tag(document: Document, container_path: str) -> tuple[str, str]:
    image = str(document.get(f"{container_path}.image") or "")
    name, _, tag = image.rpartition(":")
    return (name, tag) if name else (image, "")


def _pin_applications(pins: _Pins, lab: Lab, root: Path) -> None:
    charts = {
        "kube-prometheus-stack": (
            lab.versions.kube_prometheus_stack,
            "versions.kube_prometheus_stack",
        ),
        "base": (lab.versions.istio, "versions.istio"),
        "istiod": (lab.versions.istio, "versions.istio"),
        "gateway": (lab.versions.istio, "versions.istio"),
        "external-secrets": (lab.versions.eso, "versions.eso"),
    }
    _pin_gitops_repository(pins, lab, root)
    for app in pins.find(lambda d: d.kind == "Application"):
        for field, source in sources(app):
            repo = str(source.get("repoURL", ""))
            revision = source.get("targetRevision")
            if "postgres-operator" in repo.lower():
                pins.equal(
                    app, f"{field}.targetRevision", revision, lab.versions.pgo, "versions.pgo"
                )
                pins.equal(
                    app,
                    "spec.destination.namespace",
                    app.get("spec.destination.namespace"),
                    lab.postgres.operator_namespace,
                    "postgres.operator_namespace",
                )
            chart = source.get("chart")
            if isinstance(chart, str) and chart in charts:
                expected, params = charts[chart]
                pins.equal(app, f"{field}.targetRevision", str(revision), expected, params)
            if chart == "kube-prometheus-stack":
                values = f"{field}.helm.valuesObject.grafana.service.port"
                pins.equal(
                    app,
                    values,
                    app.get(values),
                    lab.observability.grafana_port,
                    "observability.grafana_port",
                )
                pins.equal(
                    app,
                    "spec.destination.namespace",
                    app.get("spec.destination.namespace"),
                    lab.observability.namespace,
                    "observability.namespace",
                )


def _pin_gitops_repository(pins: _Pins, lab: Lab, root: Path) -> None:
    """Every Application deploying a folder of this repository names params' repo and revision."""
    settings = lab.argocd
    own = [
        (app, field, source)
        for app in pins.find(lambda d: d.kind == "Application")
        for field, source in sources(app)
        if str(source.get("path", "")).startswith(f"{root.name}/")
    ]
    if own and not settings.repo_url:
        named = sorted({str(source.get("repoURL", "")) for _, _, source in own})
        pins.problems.append(
            Problem(
                str(lab.files[-1]) if lab.files else "params",
                "(params)",
                "argocd.repo_url",
                f"not set, so nothing says which repository ArgoCD syncs {len(own)} "
                f"Application source(s) from (they name {', '.join(named)}); set it to the "
                "repository that holds these manifests",
            )
        )
    for app, field, source in own:
        if settings.repo_url:
            pins.equal(
                app,
                f"{field}.repoURL",
                source.get("repoURL"),
                settings.repo_url,
                "argocd.repo_url",
            )
        pins.equal(
            app,
            f"{field}.targetRevision",
            source.get("targetRevision"),
            settings.revision,
            "argocd.revision",
        )


def _pin_postgres(pins: _Pins, lab: Lab) -> None:
    settings = lab.postgres
    cluster = pins.one(
        "PostgresCluster",
        settings.namespace,
        settings.cluster_name,
        "phase 2.2 needs the PostgresCluster named in params postgres.cluster_name",
    )
    if cluster is None:
        return
    pins.equal(
        cluster,
        "metadata.namespace",
        cluster.namespace or settings.namespace,
        settings.namespace,
        "postgres.namespace",
    )
    pins.equal(
        cluster,
        "spec.postgresVersion",
        cluster.get("spec.postgresVersion"),
        lab.versions.postgresql,
        "versions.postgresql",
    )
    users = cluster.get("spec.users") or []
    user = next((u for u in users if isinstance(u, dict) and u.get("name") == settings.user), None)
    if user is None:
        pins.problems.append(
            problem(cluster, "spec.users", f"no user {settings.user!r} (params postgres.user)")
        )
    elif settings.database not in (user.get("databases") or []):
        pins.problems.append(
            problem(
                cluster,
                f"spec.users.{users.index(user)}.databases",
                f"{user.get('databases')!r} lacks params postgres.database {settings.database!r}",
            )
        )
    storage = "dataVolumeClaimSpec.resources.requests.storage"
    for index, _ in enumerate(cluster.get("spec.instances") or []):
        field = f"spec.instances.{index}.{storage}"
        pins.equal(cluster, field, cluster.get(field), settings.storage, "postgres.storage")
    backup = "volume.volumeClaimSpec.resources.requests.storage"
    for index, _ in enumerate(cluster.get("spec.backups.pgbackrest.repos") or []):
        field = f"spec.backups.pgbackrest.repos.{index}.{backup}"
        pins.equal(
            cluster, field, cluster.get(field), settings.backup_storage, "postgres.backup_storage"
        )


def _config_lines(text: str) -> dict[str, list[str]]:
    """A redis.conf / sentinel.conf as directive -> arguments (last one wins, as in Redis)."""
    directives: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        key = words[0].lower()
        if key == "sentinel" and len(words) > 1:
            key = f"sentinel {words[1].lower()}"
            words = words[1:]
        directives[key] = words[1:]
    return directives


def _pin_redis(pins: _Pins, lab: Lab) -> None:
    settings = lab.redis
    configs = pins.find(
        lambda d: (
            d.kind == "ConfigMap"
            and d.namespace == settings.namespace
            and isinstance(d.get("data"), dict)
            and "redis.conf" in d.data["data"]
        )
    )
    if not configs:
        pins.problems.append(
            Problem(
                "manifests/",
                "(missing)",
                "ConfigMap",
                f"no ConfigMap with redis.conf in namespace {settings.namespace}",
            )
        )
    for config in configs:
        redis_conf = _config_lines(str(config.data["data"].get("redis.conf", "")))
        field = "data.redis.conf"
        pins.equal(
            config,
            f"{field} maxmemory",
            _first(redis_conf, "maxmemory"),
            settings.maxmemory,
            "redis.maxmemory",
        )
        pins.equal(
            config,
            f"{field} maxmemory-policy",
            _first(redis_conf, "maxmemory-policy"),
            settings.maxmemory_policy,
            "redis.maxmemory_policy",
        )
        pins.equal(
            config,
            f"{field} appendonly",
            _first(redis_conf, "appendonly"),
            "yes" if settings.appendonly else "no",
            "redis.appendonly",
        )
        sentinel = _config_lines(str(config.data["data"].get("sentinel.conf", "")))
        field = "data.sentinel.conf"
        monitor = sentinel.get("sentinel monitor", [])
        pins.equal(
            config,
            f"{field} sentinel monitor <name>",
            monitor[0] if monitor else None,
            settings.master_name,
            "redis.master_name",
        )
        quorum = _word(monitor, 3)
        pins.equal(
            config,
            f"{field} sentinel monitor <quorum>",
            quorum,
            settings.sentinel_quorum,
            "redis.sentinel_quorum",
        )
        seen = _word(sentinel.get("sentinel down-after-milliseconds", []), 1)
        pins.equal(
            config,
            f"{field} sentinel down-after-milliseconds",
            seen,
            settings.down_after_ms,
            "redis.down_after_ms",
        )
    for statefulset in pins.find(
        lambda d: d.kind == "StatefulSet" and d.namespace == settings.namespace
    ):
        containers = statefulset.get("spec.template.spec.containers") or []
        names = [c.get("name") for c in containers if isinstance(c, dict)]
        replicas = statefulset.get("spec.replicas")
        pins.equal(
            statefulset,
            "spec.replicas",
            replicas,
            settings.replicas + 1,
            "redis.replicas + 1 (the master)",
        )
        if "sentinel" in names:
            pins.equal(
                statefulset,
                "spec.replicas (one sentinel per pod)",
                replicas,
                settings.sentinels,
                "redis.sentinels",
            )
        for index in range(len(names)):
            path = f"spec.template.spec.containers.{index}"
            image, tag = _image_tag(statefulset, path)
            if image.rpartition("/")[2] == "redis":
                pins.equal(
                    statefulset, f"{path}.image", tag, _tag(lab.versions.redis), "versions.redis"
                )


def _tag(version: str) -> str:
    """A version pin as an image tag: without a leading 'v'."""
    return version.removeprefix("v")


def _word(words: list[str], index: int) -> int | str | None:
    """A directive's argument: a number when it is one, as written otherwise, None if absent."""
    if index >= len(words):
        return None
    return int(words[index]) if words[index].isdigit() else words[index]


def _first(directives: dict[str, list[str]], key: str) -> str | None:
    values = directives.get(key)
    return values[0] if values else None


def _pin_shlink(pins: _Pins, lab: Lab) -> None:
    settings = lab.shlink
    deployment = pins.one(
        "Deployment", settings.namespace, "shlink", "phase 3.2 needs the Shlink Deployment"
    )
    if deployment is not None:
        pins.equal(
            deployment,
            "spec.replicas",
            deployment.get("spec.replicas"),
            settings.replicas,
            "shlink.replicas",
        )
        for index, _ in enumerate(deployment.get("spec.template.spec.containers") or []):
            path = f"spec.template.spec.containers.{index}"
            image, tag = _image_tag(deployment, path)
            if image.endswith("shlink"):
                pins.equal(
                    deployment, f"{path}.image", tag, _tag(lab.versions.shlink), "versions.shlink"
                )
    config = pins.one(
        "ConfigMap", settings.namespace, "shlink-config", "phase 3.1 needs Shlink's ConfigMap"
    )
    if config is None:
        return
    postgres = lab.postgres
    for key, expected, params in (
        ("DEFAULT_DOMAIN", settings.default_domain, "shlink.default_domain"),
        ("DB_NAME", postgres.database, "postgres.database"),
        ("DB_USER", postgres.user, "postgres.user"),
        ("REDIS_SENTINEL_SERVICE", lab.redis.master_name, "redis.master_name"),
    ):
        pins.equal(config, f"data.{key}", config.get(f"data.{key}"), expected, params)
    host = str(config.get("data.DB_HOST") or "")
    primary = f"{postgres.cluster_name}-primary.{postgres.namespace}.svc"
    if not host.startswith(primary):
        pins.problems.append(
            problem(
                config,
                "data.DB_HOST",
                f"{host!r} is not PGO's primary service {primary!r} "
                "(params postgres.cluster_name, postgres.namespace)",
            )
        )
    servers = str(config.get("data.REDIS_SERVERS") or "")
    if f".{lab.redis.namespace}." not in servers or ":26379" not in servers:
        pins.problems.append(
            problem(
                config,
                "data.REDIS_SERVERS",
                f"{servers!r} does not name the sentinels (port 26379) in namespace "
                f"{lab.redis.namespace} (params redis.namespace)",
            )
        )


def _pin_secrets(pins: _Pins, lab: Lab) -> None:
    """Where params say labkit reads a secret, an ExternalSecret must put it (or read it)."""
    externals = pins.find(lambda d: d.kind == "ExternalSecret")
    references = (
        ("shlink.api_key", lab.shlink.api_key.kubernetes, "target"),
        ("postgres.password", lab.postgres.password.kubernetes, "source"),
    )
    for params, reference, role in references:
        if reference is None:
            continue  # the secret lives in a file or variable: nothing in the cluster to match
        namespace, name, key = reference.split("/")
        found = False
        for external in externals:
            target = external.get("spec.target.name") or external.name
            for item in external.get("spec.data") or []:
                if not isinstance(item, dict):
                    continue
                if role == "target":
                    found |= (external.namespace, target, item.get("secretKey")) == (
                        namespace,
                        name,
                        key,
                    )
                else:
                    remote = item.get("remoteRef") or {}
                    found |= (remote.get("key"), remote.get("property")) == (name, key)
        if not found:
            what = "writes" if role == "target" else "reads"
            pins.problems.append(
                Problem(
                    "manifests/",
                    "(missing)",
                    "ExternalSecret",
                    f"none {what} {namespace}/{name} key {key}, where params {params} "
                    "says the secret is",
                )
            )


def _pin_istio(pins: _Pins, lab: Lab) -> None:
    settings = lab.istio
    services = pins.find(lambda d: d.kind == "VirtualService")
    if not services:
        pins.problems.append(
            Problem(
                "manifests/",
                "(missing)",
                "VirtualService",
                "phase 4.2 needs a VirtualService for Shlink",
            )
        )
    for service in services:
        for index, _ in enumerate(service.get("spec.http") or []):
            route = f"spec.http.{index}"
            pins.equal(
                service,
                f"{route}.timeout",
                seconds(service.get(f"{route}.timeout")),
                settings.timeout_s,
                "istio.timeout_s",
            )
            pins.equal(
                service,
                f"{route}.retries.attempts",
                service.get(f"{route}.retries.attempts"),
                settings.retry_attempts,
                "istio.retry_attempts",
            )
            pins.equal(
                service,
                f"{route}.retries.perTryTimeout",
                seconds(service.get(f"{route}.retries.perTryTimeout")),
                settings.retry_per_try_timeout_s,
                "istio.retry_per_try_timeout_s",
            )
    limits = [
        (filter_, index)
        for filter_ in pins.find(lambda d: d.kind == "EnvoyFilter")
        for index, patch in enumerate(filter_.get("spec.configPatches") or [])
        if "local_ratelimit" in str(field_value(patch, "patch.value.name"))
    ]
    if not limits:
        pins.problems.append(
            Problem(
                "manifests/",
                "(missing)",
                "EnvoyFilter",
                "phase 4.2 needs a local rate limit at the gateway",
            )
        )
    rate = settings.rate_limit
    for filter_, index in limits:
        bucket = f"spec.configPatches.{index}.patch.value.typed_config.value.token_bucket"
        pins.equal(
            filter_,
            f"{bucket}.max_tokens",
            filter_.get(f"{bucket}.max_tokens"),
            rate.requests,
            "istio.rate_limit.requests",
        )
        pins.equal(
            filter_,
            f"{bucket}.tokens_per_fill",
            filter_.get(f"{bucket}.tokens_per_fill"),
            rate.requests,
            "istio.rate_limit.requests",
        )
        pins.equal(
            filter_,
            f"{bucket}.fill_interval",
            seconds(filter_.get(f"{bucket}.fill_interval")),
            float(rate.per_seconds),
            "istio.rate_limit.per_seconds",
        )
    mesh = pins.one(
        "PeerAuthentication",
        "istio-system",
        "default",
        "phase 4.3 needs the mesh-wide policy 'default' in istio-system",
    )
    if mesh is not None:
        pins.equal(mesh, "spec.mtls.mode", mesh.get("spec.mtls.mode"), settings.mtls, "istio.mtls")


def _pin_observability(pins: _Pins, lab: Lab) -> None:
    for rules in pins.find(lambda d: d.kind == "PrometheusRule"):
        for group_index, group in enumerate(rules.get("spec.groups") or []):
            for rule_index, rule in enumerate(field_value(group, "rules") or []):
                params = field_value(rule, "labels.params")
                if not isinstance(params, str):
                    continue
                field = f"spec.groups.{group_index}.rules.{rule_index}"
                expected = field_value(lab.model_dump(), params)
                if not isinstance(expected, int | float) or isinstance(expected, bool):
                    pins.problems.append(
                        problem(
                            rules, f"{field}.labels.params", f"{params!r} is not a number in params"
                        )
                    )
                    continue
                threshold = re.search(r"[<>]=?\s*(-?\d+(?:\.\d+)?)\s*$", str(rule.get("expr")))
                seen = float(threshold.group(1)) if threshold else None
                pins.equal(rules, f"{field}.expr (threshold)", seen, float(expected), params)
    for deployment in pins.find(lambda d: d.kind == "Deployment"):
        for index, _ in enumerate(deployment.get("spec.template.spec.containers") or []):
            path = f"spec.template.spec.containers.{index}"
            image, tag = _image_tag(deployment, path)
            if image.endswith("jaegertracing/all-in-one"):
                pins.equal(
                    deployment, f"{path}.image", tag, _tag(lab.versions.jaeger), "versions.jaeger"
                )
