"""The shipped manifests validate; each kind of breakage is caught and names its file and field."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit import manifests
from labkit.cli import main
from labkit.errors import ConfigError
from labkit.params import Lab, load_lab

REPO = Path(__file__).resolve().parent.parent
HOMELAB = REPO / "params" / "homelab.yaml"
DEFECTS = REPO / "tests" / "data" / "manifests-defects"


@pytest.fixture(scope="module")
def homelab() -> Lab:
    return load_lab(HOMELAB)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A private copy of manifests/ to break."""
    root = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", root)
    return root


def _edit(root: Path, file: str, change: Callable[[list[dict[str, Any]]], None]) -> None:
    path = root.parent / file
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    change(documents)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def _set(
    field: str | list[str], value: Any, index: int = 0
) -> Callable[[list[dict[str, Any]]], None]:
    """A change that sets (or, for value None, deletes) a field of document ``index``.

    ``field`` is dotted, or a list of keys when a key holds a dot (``redis.conf``).
    """

    def change(documents: list[dict[str, Any]]) -> None:
        *parents, last = field.split(".") if isinstance(field, str) else field
        node: Any = documents[index]
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def test_shipped_tree_is_valid_for_the_homelab(homelab: Lab) -> None:
    documents, problems = manifests.load_documents(manifests.default_root())
    assert problems == []
    kinds = {document.kind for document in documents}
    # The tree covers phases 1.5 to 5.2: a check that would pass on an empty folder proves nothing.
    assert {
        "Application",
        "PostgresCluster",
        "StatefulSet",
        "ExternalSecret",
        "Gateway",
        "VirtualService",
        "EnvoyFilter",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "PrometheusRule",
        "Telemetry",
    } <= kinds
    assert [str(p) for p in manifests.validate(homelab)] == []


def test_sandbox_params_show_where_the_lab_differs() -> None:
    problems = manifests.validate(load_lab(REPO / "params" / "local.yaml"))
    fields = {(p.file, p.field) for p in problems}
    assert ("manifests/shlink/deployment.yaml", "spec.replicas") in fields
    assert ("manifests/argocd/apps/postgres-operator.yaml", "spec.source.targetRevision") in fields


BREAKAGES = [
    # (file, change, field named, words in the message)
    pytest.param(
        "manifests/postgres/postgres.yaml",
        _set("spec.postgresVersion", "eighteen"),
        "spec.postgresVersion",
        "is not of type",
        id="crd-wrong-type",
    ),
    pytest.param(
        "manifests/istio/virtualservice.yaml",
        _set("spec.http.0.retries.attemps", 3),
        "spec.http.0.retries.attemps",
        "unknown field",
        id="crd-unknown-field",
    ),
    pytest.param(
        "manifests/istio/gateway.yaml",
        _set("specc", {}),
        "specc",
        "unknown field",
        id="crd-unknown-top-level-field",
    ),
    pytest.param(
        "manifests/argocd/apps/redis.yaml",
        _set(["metadata", "annotations", "argocd.argoproj.io/sync-wave"], 2),
        "metadata.annotations.argocd.argoproj.io/sync-wave",
        "is not of type 'string'",
        id="crd-annotation-not-a-string",
    ),
    pytest.param(
        "manifests/postgres/postgres.yaml",
        _set("spec.instances", None),
        "spec.instances",
        "required but missing",
        id="crd-missing-required",
    ),
    pytest.param(
        "manifests/shlink/deployment.yaml",
        _set("spec.replicas", "two"),
        "spec.replicas",
        "is not of type",
        id="core-wrong-type",
    ),
    pytest.param(
        "manifests/shlink/service.yaml",
        _set("spec.portz", []),
        "spec.portz",
        "unknown field",
        id="core-unknown-field",
    ),
    pytest.param(
        "manifests/redis/statefulset.yaml",
        _set("spec.selector", None),
        "spec.selector",
        "required but missing",
        id="core-missing-required",
    ),
    pytest.param(
        "manifests/shlink/configmap.yaml",
        _set("metadata.name", None),
        "metadata.name",
        "required but missing",
        id="missing-name",
    ),
    pytest.param(
        "manifests/istio/gateway.yaml",
        _set("metadata.namespace", None),
        "metadata.namespace",
        "no namespace is set",
        id="namespaced-without-namespace",
    ),
    pytest.param(
        "manifests/redis/serviceaccount.yaml",
        _set("metadata.namespace", "default"),
        "metadata.namespace",
        "overrides it",
        id="namespace-overridden-by-kustomize",
    ),
    pytest.param(
        "manifests/argocd/apps/redis.yaml",
        _set("spec.source.path", "manifests/rediss"),
        "spec.source.path",
        "does not exist",
        id="application-path-missing",
    ),
    pytest.param(
        "manifests/argocd/apps/shlink.yaml",
        _set("spec.source.repoURL", "https://example.invalid/fork.git"),
        "spec.source.repoURL",
        "argocd.repo_url",
        id="application-repo-drift",
    ),
    pytest.param(
        "manifests/argocd/apps/redis.yaml",
        _set("spec.source.targetRevision", "feature-branch"),
        "spec.source.targetRevision",
        "argocd.revision is 'main'",
        id="application-revision-drift",
    ),
    pytest.param(
        "manifests/argocd/root-app.yaml",
        _set("spec.source.targetRevision", "HEAD"),
        "spec.source.targetRevision",
        "argocd.revision is 'main'",
        id="root-application-revision-drift",
    ),
    pytest.param(
        "manifests/istio/authorizationpolicy.yaml",
        _set("spec.rules.0.from.0.source.principals.0", "cluster.local/ns/shlink/sa/shlinkk"),
        "spec.rules.0.from.0.source.principals.0",
        "no ServiceAccount 'shlinkk' in namespace shlink",
        id="principal-names-no-service-account",
    ),
    pytest.param(
        "manifests/argocd/apps/monitoring.yaml",
        _set(["metadata", "annotations", "argocd.argoproj.io/sync-wave"], "3"),
        "metadata.annotations.argocd.argoproj.io/sync-wave",
        "but kube-prometheus-stack (wave 3) installs the monitoring.coreos.com CRDs",
        id="crd-user-not-after-its-installer",
    ),
    pytest.param(
        "manifests/argocd/apps/redis.yaml",
        _set(["metadata", "annotations", "argocd.argoproj.io/sync-wave"], "1"),
        "metadata.annotations.argocd.argoproj.io/sync-wave",
        "its StatefulSet redis runs in namespace redis, labelled for injection",
        id="injected-workload-in-istiod-wave",
    ),
    pytest.param(
        "manifests/istio/virtualservice.yaml",
        _set("spec.http.1.retries", None),
        "spec.http.1.retries",
        "sets no retries, so Istio's default applies",
        id="write-route-with-istio-default-retries",
    ),
    pytest.param(
        "manifests/istio/virtualservice.yaml",
        _set("spec.http.1.retries.retryOn", "connect-failure,5xx"),
        "spec.http.1.retries.retryOn",
        "retries on 5xx",
        id="write-route-retried-on-5xx",
    ),
    pytest.param(
        "manifests/istio/virtualservice.yaml",
        _set("spec.http.0.match.1.method", {"regex": "P(OS|U)T"}),
        "spec.http.0.retries.retryOn",
        "route shlink-reads matches POST and retries on gateway-error, reset",
        id="read-route-whose-regex-matches-post",
    ),
    pytest.param(
        "manifests/redis/configmap.yaml",
        _set(
            ["data", "sentinel.conf"],
            "sentinel myid 0123456789abcdef0123456789abcdef01234567\n"
            "sentinel monitor mymaster MASTER_HOST MASTER_PORT 2\n"
            "sentinel down-after-milliseconds mymaster 5000\n",
        ),
        "data.sentinel.conf",
        "is one literal ID for every pod of StatefulSet redis",
        id="sentinel-id-shared-by-every-pod",
    ),
    pytest.param(
        "manifests/redis/statefulset.yaml",
        _set("spec.template.spec.initContainers.0.env.0.value", "5"),
        "spec.template.spec.initContainers.0.env REDIS_PODS",
        "'5' but spec.replicas is 3",
        id="sentinel-init-asks-the-wrong-pods",
    ),
    pytest.param(
        "manifests/shlink/kustomization.yaml",
        _set("resources.2", "config-map.yaml"),
        "resources.2",
        "does not exist",
        id="kustomization-lists-missing-file",
    ),
    pytest.param(
        "manifests/postgres/postgres.yaml",
        _set("spec.postgresVersion", 17),
        "spec.postgresVersion",
        "versions.postgresql is 18",
        id="pin-postgres-version",
    ),
    pytest.param(
        "manifests/postgres/postgres.yaml",
        _set(
            "spec.backups.pgbackrest.repos.0.volume.volumeClaimSpec.resources.requests.storage",
            "10Gi",
        ),
        "spec.backups.pgbackrest.repos.0.volume.volumeClaimSpec.resources.requests.storage",
        "postgres.backup_storage",
        id="pin-backup-storage",
    ),
    pytest.param(
        "manifests/argocd/apps/postgres-operator.yaml",
        _set("spec.source.targetRevision", "v6.0.3"),
        "spec.source.targetRevision",
        "versions.pgo is 'v6.0.0'",
        id="pin-pgo-revision",
    ),
    pytest.param(
        "manifests/redis/configmap.yaml",
        _set(
            ["data", "sentinel.conf"],
            "sentinel monitor mymaster MASTER_HOST 6379 1\n"
            "sentinel down-after-milliseconds mymaster 5000\n",
        ),
        "data.sentinel.conf sentinel monitor <quorum>",
        "redis.sentinel_quorum",
        id="pin-sentinel-quorum",
    ),
    pytest.param(
        "manifests/redis/configmap.yaml",
        _set(
            ["data", "redis.conf"], "maxmemory 256mb\nmaxmemory-policy noeviction\nappendonly yes\n"
        ),
        "data.redis.conf maxmemory-policy",
        "redis.maxmemory_policy",
        id="pin-redis-policy",
    ),
    pytest.param(
        "manifests/redis/statefulset.yaml",
        _set("spec.replicas", 5),
        "spec.replicas",
        "redis.replicas + 1",
        id="pin-redis-replicas",
    ),
    pytest.param(
        "manifests/istio/virtualservice.yaml",
        _set("spec.http.0.timeout", "10s"),
        "spec.http.0.timeout",
        "istio.timeout_s",
        id="pin-istio-timeout",
    ),
    pytest.param(
        "manifests/istio/virtualservice.yaml",
        _set("spec.http.0.retries.attempts", 5),
        "spec.http.0.retries.attempts",
        "istio.retry_attempts",
        id="pin-istio-retries",
    ),
    pytest.param(
        "manifests/istio/ratelimit.yaml",
        _set("spec.configPatches.0.patch.value.typed_config.value.token_bucket.max_tokens", 50),
        "spec.configPatches.0.patch.value.typed_config.value.token_bucket.max_tokens",
        "istio.rate_limit.requests",
        id="pin-rate-limit",
    ),
    pytest.param(
        "manifests/istio/peerauthentication.yaml",
        _set("spec.mtls.mode", "PERMISSIVE"),
        "spec.mtls.mode",
        "istio.mtls",
        id="pin-mtls",
    ),
    pytest.param(
        "manifests/shlink/configmap.yaml",
        _set("data.DB_HOST", "postgres.postgres.svc"),
        "data.DB_HOST",
        "primary service",
        id="pin-shlink-db-host",
    ),
    pytest.param(
        "manifests/shlink/externalsecret.yaml",
        _set("spec.target.name", "shlink-api", index=1),
        "ExternalSecret",
        "shlink.api_key",
        id="pin-api-key-location",
    ),
    pytest.param(
        "manifests/monitoring/alerts.yaml",
        _set(
            "spec.groups.0.rules.0.expr",
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 50",
        ),
        "spec.groups.0.rules.0.expr (threshold)",
        "targets.redirect_p99_ms",
        id="pin-alert-threshold",
    ),
]


@pytest.mark.parametrize(("file", "change", "field", "words"), BREAKAGES)
def test_each_breakage_is_named(
    homelab: Lab,
    tree: Path,
    file: str,
    change: Callable[[list[dict[str, Any]]], None],
    field: str,
    words: str,
) -> None:
    _edit(tree, file, change)
    problems = manifests.validate(homelab, tree)
    matching = [p for p in problems if p.field == field and words in p.message]
    assert matching, "\n".join(map(str, problems)) or "no problems at all"
    if matching[0].file != "manifests/":  # a missing document names no file of its own
        assert matching[0].file == file


def test_gitops_repository_comes_from_params(tmp_path: Path) -> None:
    """Without argocd.repo_url nothing says where ArgoCD syncs from; another revision is named."""
    layer = tmp_path / "lab.yaml"
    layer.write_text(f"extends: {HOMELAB}\nargocd:\n  repo_url: ''\n  revision: v1\n")
    problems = manifests.validate(load_lab(layer))
    assert any(p.field == "argocd.repo_url" and "not set" in p.message for p in problems)
    revisions = {p.file for p in problems if p.field == "spec.source.targetRevision"}
    assert "manifests/argocd/root-app.yaml" in revisions
    assert "manifests/argocd/apps/shlink.yaml" in revisions


def _defective(tmp_path: Path, name: str) -> Path:
    """A copy of manifests/ with a defect's files laid over it (and its remove.txt deleted)."""
    root = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", root)
    fixture = DEFECTS / name
    for path in sorted((fixture / "manifests").rglob("*")):
        if path.is_file():
            target = root / path.relative_to(fixture / "manifests")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    removed = fixture / "remove.txt"
    for line in removed.read_text().split() if removed.exists() else []:
        (root.parent / line).unlink()
    return root


# The defects a review found in manifests/ (issue 12): each fixture under
# tests/data/manifests-defects/ holds the defective version of the files the fix changed.
DEFECT_CASES = [
    # (fixture, file, object, field, words saying what was seen and what to do)
    pytest.param(
        "pgo-principals",
        "manifests/istio/authorizationpolicy.yaml",
        "AuthorizationPolicy postgres/shlink-db-allow",
        "spec.rules",
        "pgBackRest repo host (backups pulled from the instances) runs as shlink-db-repohost, "
        "so this ALLOW policy would deny it; add cluster.local/ns/postgres/sa/shlink-db-repohost",
        id="pgo-repohost-not-admitted",
    ),
    pytest.param(
        "pgo-principals",
        "manifests/istio/authorizationpolicy.yaml",
        "AuthorizationPolicy postgres/shlink-db-allow",
        "spec.rules.1.from.0.source.principals.1",
        "talks to its peers as 'shlink-db-pgbackrest'",
        id="pgo-principal-unused",
    ),
    pytest.param(
        "argocd-ordering",
        "manifests/argocd/root-app.yaml",
        "Application argocd/root",
        "(bootstrap)",
        "nothing installs argocd-cm's resource.customizations.health.argoproj.io_Application",
        id="waves-without-application-health",
    ),
    pytest.param(
        "argocd-ordering",
        "manifests/argocd/apps/postgres-cluster.yaml",
        "Application argocd/postgres-cluster",
        "spec.syncPolicy.syncOptions",
        "postgres-operator.crunchydata.com whose CRDs another Application installs, without "
        "SkipDryRunOnMissingResource=true",
        id="crd-from-another-app-without-skip-dry-run",
    ),
    pytest.param(
        "argocd-ordering",
        "manifests/argocd/apps/postgres-cluster.yaml",
        "Application argocd/postgres-cluster",
        "spec.syncPolicy.retry",
        "add retry (limit and backoff)",
        id="crd-from-another-app-without-retry",
    ),
    pytest.param(
        "gateway-wave",
        "manifests/argocd/apps/istio-ingressgateway.yaml",
        "Application argocd/istio-ingressgateway",
        "metadata.annotations.argocd.argoproj.io/sync-wave",
        "wave 1, but Istio's gateway chart injects its pods (sidecar.istio.io/inject) and istiod, "
        "which serves the injection webhook, is in wave 1: its pods would start without a "
        "sidecar; move it to a wave after 1",
        id="gateway-in-istiod-wave",
    ),
    pytest.param(
        "write-retries",
        "manifests/istio/virtualservice.yaml",
        "VirtualService shlink/shlink",
        "spec.http.0.retries.retryOn",
        "route shlink matches POST/PATCH and retries on unavailable, cancelled, reset, 503, "
        "which fire after the upstream may have carried the request out (a create would make "
        "two short URLs); keep only connect-failure,refused-stream,reset-before-request",
        id="post-retried-on-503",
    ),
    pytest.param(
        "sentinel-identity",
        "manifests/redis/configmap.yaml",
        "ConfigMap redis/redis-config",
        "data.sentinel.conf",
        "no 'sentinel myid', and /etc/redis/sentinel.conf (StatefulSet redis) is written afresh "
        "at every pod start: each start is a new Sentinel to its peers",
        id="sentinel-without-stable-id",
    ),
    pytest.param(
        "sentinel-identity",
        "manifests/redis/statefulset.yaml",
        "StatefulSet redis/redis",
        "spec.template.spec.containers.1.command",
        "Sentinel's config /etc/redis/sentinel.conf is on volume runtime-config, which dies with "
        "the pod: the master Sentinel last agreed on is lost, so a cold restart, with no "
        "Sentinel left to ask, picks a fixed pod as master; keep the file on a "
        "volumeClaimTemplate (data)",
        id="sentinel-config-dies-with-the-pod",
    ),
    pytest.param(
        "namespace-owner",
        "manifests/external-secrets/grafana-admin.yaml",
        "Namespace monitoring",
        "metadata.name",
        "Namespace monitoring belongs to Application secret-stores, which runs no workload in "
        "it (used by kube-prometheus-stack, monitoring): pruning or deleting secret-stores "
        "would delete monitoring and everything in it; move it to kube-prometheus-stack, or "
        "annotate it argocd.argoproj.io/sync-options: Prune=false",
        id="namespace-in-an-app-that-runs-nothing-there",
    ),
    pytest.param(
        "rate-limit-caps-load",
        "manifests/istio/ratelimit.yaml",
        "EnvoyFilter istio-system/ingress-local-ratelimit",
        "spec.configPatches.0.patch.value.typed_config.value.token_bucket",
        "admits 100 requests/s per gateway pod x 1 pod(s) (Application istio-ingressgateway: "
        "autoscaling.minReplicas 1) = 100/s, below the load steps' 10000/s (params "
        "targets.rate_steps): phase 6 through the gateway would measure 429s, not Shlink; "
        "raise params istio.rate_limit.requests (per_seconds 1) to at least 10000",
        id="gateway-rate-limit-caps-the-load-tests",
    ),
]


@pytest.fixture(scope="module")
def shipped_problems(homelab: Lab) -> list[manifests.Problem]:
    return manifests.validate(homelab)


@pytest.mark.parametrize(("fixture", "file", "name", "field", "words"), DEFECT_CASES)
def test_each_defect_is_rejected_and_the_fix_passes(
    homelab: Lab,
    shipped_problems: list[manifests.Problem],
    tmp_path: Path,
    fixture: str,
    file: str,
    name: str,
    field: str,
    words: str,
) -> None:
    def named(problems: list[manifests.Problem]) -> list[manifests.Problem]:
        return [
            p
            for p in problems
            if p.file == file and name in p.document and p.field == field and words in p.message
        ]

    problems = manifests.validate(homelab, _defective(tmp_path, fixture))
    assert named(problems), "\n".join(map(str, problems)) or "no problems at all"
    assert named(shipped_problems) == []


@pytest.mark.parametrize(
    "change",
    [
        _set(["data", "resource.customizations.health.argoproj.io_Application"], "return {}"),
        _set("metadata.namespace", "argo"),
    ],
    ids=["reads-no-health", "other-namespace"],
)
def test_application_health_check_must_be_the_real_one(
    homelab: Lab, tree: Path, change: Callable[[list[dict[str, Any]]], None]
) -> None:
    _edit(tree, "manifests/argocd/argocd-cm.yaml", change)
    problems = manifests.validate(homelab, tree)
    assert any(p.field == "(bootstrap)" and "nothing installs" in p.message for p in problems)


def test_bootstrap_files_exist_in_order() -> None:
    files = manifests.bootstrap_files()
    assert [f.name for f in files] == ["argocd-cm.yaml", "root-app.yaml"]
    assert all(f.is_file() for f in files)


def test_a_namespace_never_pruned_may_live_anywhere(homelab: Lab, tmp_path: Path) -> None:
    root = _defective(tmp_path, "namespace-owner")
    _edit(
        root,
        "manifests/external-secrets/grafana-admin.yaml",
        _set(["metadata", "annotations"], {"argocd.argoproj.io/sync-options": "Prune=false"}),
    )
    problems = manifests.validate(homelab, root)
    assert not [p for p in problems if "Namespace monitoring belongs" in p.message]


def test_rate_limit_is_checked_against_the_load_steps_in_params(tmp_path: Path) -> None:
    """The shipped gateway admits 2 x 6000/s; a lab that steps to 20000/s needs 10000 per pod."""
    layer = tmp_path / "lab.yaml"
    layer.write_text(f"extends: {HOMELAB}\ntargets:\n  rate_steps: [1000, 20000]\n")
    problems = manifests.validate(load_lab(layer))
    assert [p.message.split(":")[0] for p in problems if "load steps" in p.message] == [
        "admits 6000 requests/s per gateway pod x 2 pod(s) (Application istio-ingressgateway"
    ]
    assert any("to at least 10000" in p.message for p in problems)


def test_orphan_file_and_yaml_error_are_reported(homelab: Lab, tree: Path) -> None:
    (tree / "redis" / "extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n  bad: [\n")
    problems = manifests.validate(homelab, tree)
    assert any(
        p.file == "manifests/redis/extra.yaml" and "not valid YAML" in p.message for p in problems
    )
    assert any(
        p.file == "manifests/redis/kustomization.yaml" and "extra.yaml" in p.message
        for p in problems
    )


def test_unknown_custom_resource_and_duplicates(homelab: Lab, tree: Path) -> None:
    (tree / "shlink" / "extra.yaml").write_text(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: shlink}\n"
        "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: shlink, namespace: shlink}\n"
    )
    _edit(tree, "manifests/shlink/kustomization.yaml", _append_resource("extra.yaml"))
    problems = manifests.validate(homelab, tree)
    assert any(p.field == "apiVersion" and "no schema" in p.message for p in problems)
    assert any(p.field == "metadata.name" and "also defined" in p.message for p in problems)


def _append_resource(name: str) -> Callable[[list[dict[str, Any]]], None]:
    def change(documents: list[dict[str, Any]]) -> None:
        documents[0]["resources"].append(name)

    return change


def test_folder_without_application_is_reported(homelab: Lab, tree: Path) -> None:
    (tree / "argocd" / "apps" / "tracing.yaml").unlink()
    _edit(tree, "manifests/argocd/apps/kustomization.yaml", _remove_resource("tracing.yaml"))
    problems = manifests.validate(homelab, tree)
    assert any(
        p.file == "manifests/tracing/kustomization.yaml" and "no Application" in p.message
        for p in problems
    )


def _remove_resource(name: str) -> Callable[[list[dict[str, Any]]], None]:
    def change(documents: list[dict[str, Any]]) -> None:
        documents[0]["resources"].remove(name)

    return change


def test_command_exit_codes(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifests", "validate", "--params", str(HOMELAB), "--root", str(tree)]) == 0
    assert "valid" in capsys.readouterr().out
    _edit(tree, "manifests/postgres/postgres.yaml", _set("spec.postgresVersion", 16))
    assert main(["manifests", "validate", "--params", str(HOMELAB), "--root", str(tree)]) == 2
    assert (
        "spec.postgresVersion: 16 but params versions.postgresql is 18" in capsys.readouterr().err
    )


def test_command_names_a_defect_file_object_and_remedy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _defective(tmp_path, "pgo-principals")
    assert main(["manifests", "validate", "--params", str(HOMELAB), "--root", str(root)]) == 2
    assert (
        "manifests/istio/authorizationpolicy.yaml [document 1, AuthorizationPolicy "
        "postgres/shlink-db-allow] spec.rules: no rule admits "
        "cluster.local/ns/postgres/sa/shlink-db-repohost"
    ) in capsys.readouterr().err


def test_missing_root_is_a_config_error(homelab: Lab, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no manifests folder"):
        manifests.validate(homelab, tmp_path / "nowhere")
