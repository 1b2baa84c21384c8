"""Cluster against the API double: allow-list, verbs, apply at the wire, errors, waits."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labkit.cluster import Cluster
from labkit.errors import (
    ApplyConflict,
    ClusterError,
    ConfigError,
    ConnectError,
    NotAllowed,
    NotFound,
    WaitTimeout,
)
from labkit.params import Lab
from labkit.secrets import MASK, redact
from tests.kubeapi import TOKEN, KubeApi, fixtures

CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings", "namespace": "default", "labels": {"app": "demo"}},
    "data": {"mode": "fast"},
}


# -- opening ------------------------------------------------------------------------------


def test_no_request_reaches_an_api_server_outside_the_allow_list(tmp_path: Path) -> None:
    with KubeApi(host="127.0.0.2") as outside:
        fixtures.healthy_lab(outside.store)
        lab = outside.lab(tmp_path, allow_list=["127.0.0.1/32"])
        with pytest.raises(NotAllowed, match=r"127\.0\.0\.2 is not in lab double-lab"):
            Cluster.open(lab)
        assert outside.requests() == []


def test_the_same_server_inside_the_allow_list_is_reached(tmp_path: Path) -> None:
    with KubeApi(host="127.0.0.2") as inside:
        fixtures.healthy_lab(inside.store)
        lab = inside.lab(tmp_path, allow_list=["127.0.0.0/8"])
        with Cluster.open(lab) as cluster:
            assert cluster.version() == "v1.31.12+k3s1"
        assert inside.requests(), "the allowed server must see the request"


def test_an_unknown_context_is_a_config_error_naming_the_contexts(lab: Lab, tmp_path: Path) -> None:
    other = lab.model_copy(update={"cluster": lab.cluster.model_copy(update={"context": "prod"})})
    with pytest.raises(ConfigError, match=r"no context 'prod' \(contexts: \['double'\]\)"):
        Cluster.open(other)


def test_a_missing_kubeconfig_says_how_to_get_one(lab: Lab, tmp_path: Path) -> None:
    missing = lab.model_copy(
        update={"cluster": lab.cluster.model_copy(update={"kubeconfig": tmp_path / "none.yaml"})}
    )
    with pytest.raises(ConfigError, match=r"labkit apply --phase 1"):
        Cluster.open(missing)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "is a character device; a kubeconfig is read only from a regular file"),
        (
            b"a: &a [x, x, x, x, x, x, x, x, x]\n"
            + b"".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n".encode()
                for i in range(8)
            ),
            "is not valid YAML",
        ),  # a "billion laughs": refused, not expanded
        (b"\xff\xfe", "is not valid YAML"),
        (b"k: " + b"[" * 5000, "is not valid YAML"),  # deeper than Python's recursion
    ],
)
def test_a_hostile_kubeconfig_is_a_config_error(
    lab: Lab, tmp_path: Path, content: bytes | None, error: str
) -> None:
    path = Path("/dev/zero") if content is None else tmp_path / "kubeconfig"
    if content is not None:
        path.write_bytes(content)
    hostile = lab.model_copy(
        update={"cluster": lab.cluster.model_copy(update={"kubeconfig": path})}
    )
    with pytest.raises(ConfigError, match=error):
        Cluster.open(hostile)


def test_the_token_is_masked_once_the_kubeconfig_is_read(cluster: Cluster) -> None:
    assert redact(f"token={TOKEN}") == f"token={MASK}"


def test_a_wrong_token_is_refused_with_what_to_try(api: KubeApi, lab: Lab) -> None:
    api.wire.token = "another-token-entirely"
    with Cluster.open(lab) as cluster, pytest.raises(ClusterError, match=r"refused \(401"):
        cluster.list("Node")


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_every_request_has_a_timeout(
    silent_server: tuple[str, int], api: KubeApi, tmp_path: Path
) -> None:
    lab = api.lab(tmp_path, cluster={"request_timeout_s": 1})
    config = yaml.safe_load(Path(lab.k3s.kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{silent_server[1]}"
    Path(lab.k3s.kubeconfig).write_text(yaml.safe_dump(config))
    started = time.monotonic()
    with Cluster.open(lab) as cluster, pytest.raises(ConnectError, match="cannot reach"):
        cluster.list("Node")  # discovery first: it must time out too
    assert time.monotonic() - started < 10


# -- reading ------------------------------------------------------------------------------


def test_get_returns_the_object_or_none(cluster: Cluster) -> None:
    found = cluster.get("Node", "k3s-node-01")
    assert found is not None
    assert found["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.12+k3s1"
    assert cluster.get("Deployment", "absent", "argocd") is None
    assert cluster.exists("Namespace", "argocd")
    assert not cluster.exists("Namespace", "nowhere")


def test_require_names_what_is_missing(cluster: Cluster) -> None:
    with pytest.raises(NotFound, match=r"Deployment argocd/absent does not exist on double"):
        cluster.require("Deployment", "absent", "argocd")


def test_list_filters_by_labels_and_namespace(cluster: Cluster) -> None:
    dns = cluster.list("Pod", "kube-system", labels={"k8s-app": "kube-dns"})
    assert [pod["metadata"]["name"][:7] for pod in dns] == ["coredns"]
    assert len(cluster.list("Pod")) > len(cluster.list("Pod", "argocd")) > 0
    assert cluster.list("Pod", "argocd", labels="app.kubernetes.io/name=nothing") == []


def test_custom_resources_resolve_through_discovery(cluster: Cluster) -> None:
    apps = cluster.list("Application", "argocd")
    assert {app["metadata"]["name"] for app in apps} >= {"root", "redis"}


def test_an_unknown_kind_says_its_crd_may_be_missing(cluster: Cluster) -> None:
    with pytest.raises(NotFound, match=r"is its CRD installed"):
        cluster.list("PostgresCluster", "postgres")


def test_secret_values_are_decoded_and_masked(cluster: Cluster) -> None:
    secret = cluster.secret_value("argocd", "argocd-initial-admin-secret", "password")
    assert secret.reveal() == fixtures.ADMIN_PASSWORD
    assert str(secret) == MASK
    assert fixtures.ADMIN_PASSWORD not in redact(f"pw {fixtures.ADMIN_PASSWORD}")
    with pytest.raises(NotFound, match=r"has no key 'nope' \(keys: \['password'\]\)"):
        cluster.secret_value("argocd", "argocd-initial-admin-secret", "nope")


def test_logs_and_events(api: KubeApi, cluster: Cluster) -> None:
    api.store.logs[("kube-system", "coredns-5d8c7b9f4-0x2kq", "coredns")] = "a\nb\nc\n"
    assert cluster.logs("coredns-5d8c7b9f4-0x2kq", "kube-system", "coredns", tail_lines=2) == (
        "b\nc\n"
    )
    with pytest.raises(NotFound, match=r"log of pod kube-system/gone"):
        cluster.logs("gone", "kube-system")


# -- server-side apply --------------------------------------------------------------------


def test_apply_is_server_side_with_labkit_as_field_manager(api: KubeApi, cluster: Cluster) -> None:
    created = cluster.apply(CONFIGMAP)
    assert created["data"] == {"mode": "fast"}
    patch = api.requests("PATCH")[-1]
    assert patch.content_type == "application/apply-patch+yaml"
    assert patch.query == {"fieldManager": "labkit"}  # no force unless asked
    assert patch.path == "/api/v1/namespaces/default/configmaps/settings"
    managers = [entry["manager"] for entry in created["metadata"]["managedFields"]]
    assert managers == ["labkit"]


def test_a_dry_run_changes_nothing(api: KubeApi, cluster: Cluster) -> None:
    seen = cluster.apply(CONFIGMAP, dry_run=True)
    assert seen["data"] == {"mode": "fast"}
    assert api.requests("PATCH")[-1].query["dryRun"] == "All"
    assert cluster.get("ConfigMap", "settings", "default") is None


def test_applying_twice_changes_nothing_the_second_time(cluster: Cluster) -> None:
    first = cluster.apply(CONFIGMAP)
    second = cluster.apply(CONFIGMAP)
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_a_field_dropped_from_the_manifest_is_removed(cluster: Cluster) -> None:
    cluster.apply({**CONFIGMAP, "data": {"mode": "fast", "extra": "1"}})
    after = cluster.apply(CONFIGMAP)
    assert after["data"] == {"mode": "fast"}


def test_a_conflict_names_the_field_and_its_other_manager(api: KubeApi, cluster: Cluster) -> None:
    resource = api.store.resource_for("v1", "ConfigMap")
    api.store.apply(
        resource,
        "default",
        "settings",
        CONFIGMAP | {"data": {"mode": "slow"}},
        "kubectl-edit",
        force=False,
        dry_run=False,
    )
    with pytest.raises(ApplyConflict, match=r"\.data\.mode is managed by \"kubectl-edit\"") as info:
        cluster.apply(CONFIGMAP)
    assert info.value.conflicts == [(".data.mode", '"kubectl-edit"')]
    assert "force=True" in str(info.value)
    taken = cluster.apply(CONFIGMAP, force=True)
    assert api.requests("PATCH")[-1].query["force"] == "true"
    assert taken["data"]["mode"] == "fast"


def test_apply_into_a_missing_namespace_is_not_found(cluster: Cluster) -> None:
    manifest = {**CONFIGMAP, "metadata": {"name": "x", "namespace": "nowhere"}}
    with pytest.raises(
        NotFound,
        match=r"apply ConfigMap nowhere/x on double: not found.*create the namespace first",
    ):
        cluster.apply(manifest)


def test_a_namespaced_object_without_namespace_needs_one(cluster: Cluster) -> None:
    manifest = {**CONFIGMAP, "metadata": {"name": "x"}}
    with pytest.raises(ConfigError, match="names no namespace"):
        cluster.apply(manifest)
    assert cluster.apply(manifest, namespace="default")["metadata"]["namespace"] == "default"


def test_multi_document_yaml_with_a_crd_then_its_resource(cluster: Cluster) -> None:
    text = yaml.safe_dump_all(
        [
            fixtures.crd("example.io", "Widget", "widgets"),
            None,
            {
                "apiVersion": "example.io/v1alpha1",
                "kind": "Widget",
                "metadata": {"name": "w", "namespace": "default"},
                "spec": {"size": 3},
            },
        ]
    )
    applied = cluster.apply_all(text)
    assert [a["kind"] for a in applied] == ["CustomResourceDefinition", "Widget"]
    assert cluster.require("Widget", "w", "default")["spec"] == {"size": 3}


def test_delete_says_whether_it_deleted(cluster: Cluster) -> None:
    cluster.apply(CONFIGMAP)
    assert cluster.delete("ConfigMap", "settings", "default") is True
    assert cluster.delete("ConfigMap", "settings", "default") is False


# -- waits --------------------------------------------------------------------------------


def test_wait_for_a_condition_that_comes_true_later(api: KubeApi, cluster: Cluster) -> None:
    fixtures.node_not_ready(api.store, "k3s-node-02")
    api.schedule(1.0, lambda store: store.put(fixtures.node("k3s-node-02", 1)))
    seen: list[str] = []
    found = cluster.wait_for(
        "Node", "k3s-node-02", condition="Ready", timeout_s=10, progress=seen.append
    )
    assert found["metadata"]["name"] == "k3s-node-02"
    assert any("Ready=Unknown" in line for line in seen)
    assert any("Ready=True" in line for line in seen)


def test_a_wait_that_never_ends_names_state_events_and_logs(api: KubeApi, cluster: Cluster) -> None:
    fixtures.pod_crashing(api.store, "argocd", "argocd-server")
    api.store.put(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "argocd-server.1", "namespace": "argocd"},
            "involvedObject": {
                "kind": "Pod",
                "name": "argocd-server-7c9d8f6b5-q0z4m",
                "namespace": "argocd",
            },
            "reason": "BackOff",
            "message": "Back-off restarting failed container",
            "type": "Warning",
            "lastTimestamp": fixtures.TIME,
        }
    )
    deployment = api.store.objects[("apps", "deployments", "argocd", "argocd-server")]
    deployment["status"].pop("readyReplicas")
    with pytest.raises(WaitTimeout) as info:
        cluster.rollout("Deployment", "argocd-server", "argocd", timeout_s=1.5)
    message = str(info.value)
    assert "rollout of Deployment argocd/argocd-server" in message
    assert "last seen: 0/1 ready" in message
    assert "BackOff" in message
    assert "CrashLoopBackOff" in message
    assert "address already in use" in message  # the failing container's last log line


def test_a_rollout_that_completes(cluster: Cluster) -> None:
    done = cluster.rollout("StatefulSet", "argocd-application-controller", "argocd", timeout_s=5)
    assert done["status"]["readyReplicas"] == 1


# -- exec ---------------------------------------------------------------------------------


def test_exec_returns_exit_code_and_output(api: KubeApi, cluster: Cluster) -> None:
    seen: list[tuple[list[str], str]] = []

    def redis_cli(argv: list[str], container: str) -> tuple[int, str, str]:
        seen.append((argv, container))
        if argv == ["redis-cli", "ping"]:
            return 0, "PONG\n", ""
        return 1, "", "ERR unknown command\n"

    pod = "argocd-redis-7c9d8f6b5-q4z4m"
    api.store.exec_handlers[("argocd", pod)] = redis_cli
    result = cluster.exec(pod, "argocd", ["redis-cli", "ping"], container="redis")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "PONG\n", "")
    assert seen == [(["redis-cli", "ping"], "redis")]
    failed = cluster.exec(pod, "argocd", ["redis-cli", "nonsense"])
    assert (failed.exit_code, failed.stderr) == (1, "ERR unknown command\n")
    upgrade = [r for r in api.requests("GET") if r.path.endswith("/exec")][-1]
    assert upgrade.query["command"] == "nonsense"  # each argv item is its own command=


def test_exec_in_a_missing_pod_is_not_found(cluster: Cluster) -> None:
    with pytest.raises(NotFound, match=r"Pod argocd/gone does not exist"):
        cluster.exec("gone", "argocd", ["true"])


# -- secret references ---------------------------------------------------------------------


def test_a_kubernetes_secret_reference_resolves_through_the_cluster(
    api: KubeApi, lab: Lab, cluster: Cluster
) -> None:
    from labkit.cluster import resolve_secret
    from labkit.secrets import SecretRef

    api.store.put(fixtures.namespace("postgres"))
    api.store.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "shlink-db-pguser-shlink", "namespace": "postgres"},
            "type": "Opaque",
            "data": {"password": "c2hsaW5rLXBhc3N3b3JkLTk5"},  # shlink-password-99
        }
    )
    ref = SecretRef(kubernetes="postgres/shlink-db-pguser-shlink/password")
    password = resolve_secret(lab, ref, cluster)
    assert password.reveal() == "shlink-password-99"
    assert redact("pw=shlink-password-99 b64=c2hsaW5rLXBhc3N3b3JkLTk5") == f"pw={MASK} b64={MASK}"
    assert resolve_secret(lab, ref).reveal() == "shlink-password-99"  # opens its own cluster
    assert resolve_secret(lab, lab.postgres.password).reveal() == "pg-password-for-tests"
    with pytest.raises(NotFound, match=r"Secret postgres/absent does not exist"):
        resolve_secret(lab, SecretRef(kubernetes="postgres/absent/password"), cluster)


# -- no proxy from the environment ----------------------------------------------------------


def test_no_request_or_stream_goes_through_a_proxy_from_the_environment(
    api: KubeApi, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``http_proxy`` in the environment would carry the bearer token off the lab."""
    seen: list[str] = []
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(8)
    proxy.settimeout(0.2)
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            try:
                connection, _ = proxy.accept()
            except TimeoutError:
                continue
            seen.append(connection.recv(200).decode(errors="replace"))
            connection.close()

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, address)
        monkeypatch.setenv(name.upper(), address)
    monkeypatch.setenv("no_proxy", "example.invalid")
    monkeypatch.setenv("NO_PROXY", "example.invalid")
    pod = "argocd-redis-7c9d8f6b5-q4z4m"
    api.store.exec_handlers[("argocd", pod)] = lambda argv, container: (0, "ok\n", "")
    try:
        with Cluster.open(lab) as cluster:
            assert len(cluster.list("Node")) == 3
            assert cluster.exec(pod, "argocd", ["true"]).stdout == "ok\n"
    finally:
        stop.set()
        thread.join()
        proxy.close()
    assert seen == []
    assert api.requests("GET"), "the API server itself must have been reached"


def test_a_proxy_named_in_the_kubeconfig_must_be_allowed(lab: Lab) -> None:
    path = Path(lab.k3s.kubeconfig)
    config = yaml.safe_load(path.read_text())
    config["clusters"][0]["cluster"]["proxy-url"] = "http://198.51.100.7:3128"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(NotAllowed, match=r"198\.51\.100\.7 is not in lab double-lab"):
        Cluster.open(lab)


def test_set_based_label_selectors(cluster: Cluster) -> None:
    names = "app.kubernetes.io/name in (argocd-server,argocd-redis)"
    found = cluster.list("Pod", "argocd", labels=names)
    assert sorted(p["metadata"]["labels"]["app.kubernetes.io/name"] for p in found) == [
        "argocd-redis",
        "argocd-server",
    ]
    others = cluster.list("Pod", "argocd", labels=names.replace(" in ", " notin "))
    assert len(others) == len(cluster.list("Pod", "argocd")) - 2
