"""Cluster states for the double: a healthy lab, the ways it breaks, and a scripted kubelet.

``healthy_lab(store)`` holds what a lab after phase 1.5 shows: three K3s servers
(Ready, roles control-plane/etcd/master), kube-system (CoreDNS, local-path,
metrics-server; no Traefik), the default StorageClass, ArgoCD (pods, NodePort
service, initial admin secret, repository secret) and Applications Synced and
Healthy. Each ``break``-style function changes one thing the way a real fault
shows (a NotReady node, a Degraded Application...). ``Kubelet`` is a hook that
runs the short-lived pods labkit creates: it gives them an IP and a phase, and
a log that depends on the lab's scripted network (pod-to-pod, DNS) and storage.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.kubeapi.store import Store

NODES = ("k3s-node-01", "k3s-node-02", "k3s-node-03")
K3S_VERSION = "v1.31.12+k3s1"
TIME = "2026-12-06T17:00:00Z"
REPO_URL = "https://github.com/manubsreekumari/url-shortener-sre-lab.git"
CHILD_APPS = ("postgres-operator", "postgres-cluster", "redis", "shlink")
ADMIN_PASSWORD = "argocd-initial-pw-5Jt2"


def lab_params(api: Any, directory: Path, **sections: Any) -> Path:
    """A homelab-kind params file for a lab whose only reachable part is the double."""
    directory.mkdir(parents=True, exist_ok=True)
    secrets = directory / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "pg").write_text("pg-password-for-tests\n", encoding="utf-8")
    (secrets / "api").write_text("api-key-for-tests-123\n", encoding="utf-8")
    kubeconfig = api.kubeconfig(directory / "kubeconfig.yaml")
    base = Path(__file__).resolve().parents[2] / "params" / "base.yaml"
    data: dict[str, Any] = {
        "extends": str(base),
        "name": "double-lab",
        "kind": "homelab",
        "internet": False,
        # Node addresses from TEST-NET-1 (RFC 5737): never routed, never contacted here.
        "nodes": [
            {"name": name, "address": f"192.0.2.{11 + i}", "ssh_user": "ubuntu"}
            for i, name in enumerate(NODES)
        ],
        "ssh": {"known_hosts": str(directory / "known_hosts")},
        "k3s": {"kubeconfig": str(kubeconfig)},
        "cluster": {"request_timeout_s": 5, "wait_timeout_s": 20},
        "argocd": {"repo_url": REPO_URL, "node_port": 30443},
        "postgres": {"password": {"file": str(secrets / "pg")}},
        "shlink": {"api_key": {"file": str(secrets / "api")}},
        "allow_list": [f"{api.host}/32"],
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = directory / "double-lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# -- builders -------------------------------------------------------------------------------


def _meta(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "creationTimestamp": TIME}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    return metadata


def namespace(name: str) -> dict[str, Any]:
    """An Active Namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(name, **{"kubernetes.io/metadata.name": name}),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def node(name: str, index: int, ready: bool = True) -> dict[str, Any]:
    """A K3s server node as ``kubectl get node -o yaml`` shows it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            **_meta(
                name,
                **{
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "node-role.kubernetes.io/control-plane": "true",
                    "node-role.kubernetes.io/etcd": "true",
                    "node-role.kubernetes.io/master": "true",
                    "node.kubernetes.io/instance-type": "k3s",
                },
            ),
            "annotations": {
                "etcd.k3s.cattle.io/node-name": f"{name}-{index:08x}",
                "etcd.k3s.cattle.io/node-address": f"192.0.2.{11 + index}",
                "k3s.io/node-args": '["server"]',
            },
        },
        "spec": {"podCIDR": f"10.42.{index}.0/24", "providerID": f"k3s://{name}"},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": f"192.0.2.{11 + index}"},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "Unknown",
                    "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                    "message": "kubelet is posting ready status"
                    if ready
                    else "Kubelet stopped posting node status.",
                    "lastHeartbeatTime": TIME,
                    "lastTransitionTime": TIME,
                },
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientMemory",
                    "message": "kubelet has sufficient memory available",
                    "lastHeartbeatTime": TIME,
                    "lastTransitionTime": TIME,
                },
            ],
            "nodeInfo": {
                "kubeletVersion": K3S_VERSION,
                "kubeProxyVersion": K3S_VERSION,
                "containerRuntimeVersion": "containerd://2.0.5-k3s1",
                "osImage": "Ubuntu 24.04.3 LTS",
                "kernelVersion": "6.8.0-88-generic",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "machineID": f"{index:032x}",
                "systemUUID": f"{index:08x}-0000-0000-0000-000000000000",
                "bootID": f"{index:08x}-1111-1111-1111-111111111111",
            },
        },
    }


def container_status(name: str, image: str, ready: bool = True) -> dict[str, Any]:
    """A container's status: running (ready or not) or waiting in CrashLoopBackOff."""
    state: dict[str, Any] = (
        {"running": {"startedAt": TIME}}
        if ready
        else {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting"}}
    )
    return {
        "name": name,
        "image": image,
        "imageID": f"{image}@sha256:{'0' * 64}",
        "ready": ready,
        "started": ready,
        "restartCount": 0 if ready else 7,
        "state": state,
    }


def pod(
    name: str,
    namespace_name: str,
    image: str,
    labels: dict[str, str],
    node_name: str = NODES[0],
    ready: bool = True,
    ip: str = "10.42.0.10",
) -> dict[str, Any]:
    """A pod of one container, Running (ready or crash-looping)."""
    container = name.rsplit("-", 2)[0] if name.count("-") >= 2 else name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**_meta(name, namespace_name, **labels)},
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": container, "image": image}],
            "restartPolicy": "Always",
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "hostIP": "192.0.2.11",
            "startTime": TIME,
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "ContainersReady", "status": "True" if ready else "False"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [container_status(container, image, ready)],
        },
    }


def workload(
    kind: str, name: str, namespace_name: str, labels: dict[str, str], ready: int = 1
) -> dict[str, Any]:
    """A Deployment or StatefulSet with one replica wanted and ``ready`` of them ready."""
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": name, "image": "example/image:1"}]},
        },
    }
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "replicas": 1,
        "readyReplicas": ready,
        "updatedReplicas": 1,
    }
    if kind == "Deployment":
        status["availableReplicas"] = ready
        status["conditions"] = [
            {"type": "Available", "status": "True" if ready else "False", "reason": "x"}
        ]
    else:
        spec["serviceName"] = name
        status["currentReplicas"] = 1
    if not ready:
        status.pop("readyReplicas")
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {**_meta(name, namespace_name, **labels), "generation": 1},
        "spec": spec,
        "status": status,
    }


def application(
    name: str, sync: str = "Synced", health: str = "Healthy", path: str | None = None
) -> dict[str, Any]:
    """An ArgoCD Application with the status the controller writes."""
    revision = "3f9a1c2d4e5b6a7980aa1b2c3d4e5f6a7b8c9d0e"
    resources = [
        {
            "group": "apps",
            "version": "v1",
            "kind": "Deployment",
            "namespace": name,
            "name": name,
            "status": sync,
            "health": {"status": health}
            | ({} if health == "Healthy" else {"message": "Deployment has 0 ready replicas"}),
        }
    ]
    message = "successfully synced (all tasks run)"
    if sync != "Synced":
        message = f"one or more objects failed to apply, reason: {name} is invalid"
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": _meta(name, "argocd"),
        "spec": {
            "project": "default",
            "source": {
                "repoURL": REPO_URL,
                "targetRevision": "main",
                "path": path or f"manifests/{name}",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
        "status": {
            "sync": {
                "status": sync,
                "revision": revision,
                "comparedTo": {
                    "source": {"repoURL": REPO_URL, "targetRevision": "main", "path": path or ""},
                    "destination": {"server": "https://kubernetes.default.svc"},
                },
            },
            "health": {"status": health},
            "resources": resources,
            "operationState": {
                "phase": "Succeeded" if sync == "Synced" else "Failed",
                "message": message,
                "startedAt": TIME,
                "finishedAt": TIME,
                "operation": {"sync": {"revision": revision}},
            },
            "reconciledAt": TIME,
            "sourceType": "Kustomize" if path is None else "Directory",
        },
    }


def crd(group: str, kind: str, plural: str, version: str = "v1alpha1") -> dict[str, Any]:
    """A minimal CustomResourceDefinition (Namespaced, status subresource)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


ARGOCD_WORKLOADS = (
    ("Deployment", "argocd-server"),
    ("Deployment", "argocd-repo-server"),
    ("StatefulSet", "argocd-application-controller"),
    ("Deployment", "argocd-applicationset-controller"),
    ("Deployment", "argocd-redis"),
    ("Deployment", "argocd-dex-server"),
    ("Deployment", "argocd-notifications-controller"),
)
SYSTEM_WORKLOADS = (
    ("coredns", {"k8s-app": "kube-dns"}, "rancher/mirrored-coredns-coredns:1.12.3"),
    ("local-path-provisioner", {"app": "local-path-provisioner"}, "rancher/local-path:v0.0.31"),
    ("metrics-server", {"k8s-app": "metrics-server"}, "rancher/mirrored-metrics-server:v0.8.0"),
)


def healthy_lab(store: Store) -> None:
    """A lab after phase 1.5: nodes, kube-system, storage, ArgoCD and its Applications."""
    for name in ("default", "kube-system", "kube-public", "kube-node-lease", "argocd"):
        store.put(namespace(name))
    for index, name in enumerate(NODES):
        store.put(node(name, index))
    store.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("kubernetes", "default", component="apiserver"),
            "spec": {
                "clusterIP": "10.43.0.1",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                "type": "ClusterIP",
            },
        }
    )
    for index, (name, labels, image) in enumerate(SYSTEM_WORKLOADS):
        store.put(workload("Deployment", name, "kube-system", labels))
        store.put(
            pod(
                f"{name}-5d8c7b9f4-{index}x2kq",
                "kube-system",
                image,
                labels,
                NODES[index % 3],
                ip=f"10.42.{index % 3}.{2 + index}",
            )
        )
    store.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("kube-dns", "kube-system", **{"k8s-app": "kube-dns"}),
            "spec": {
                "clusterIP": "10.43.0.10",
                "selector": {"k8s-app": "kube-dns"},
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}],
            },
        }
    )
    store.put(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                **_meta("local-path"),
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "rancher.io/local-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
    )
    argocd_installed(store)
    for name in ("root", *CHILD_APPS):
        store.put(application(name, path="manifests/argocd/apps" if name == "root" else None))


def argocd_installed(store: Store) -> None:
    """ArgoCD's CRDs, workloads, pods (Ready), NodePort service and secrets."""
    store.put(crd("argoproj.io", "Application", "applications"))
    store.put(crd("argoproj.io", "AppProject", "appprojects"))
    for index, (kind, name) in enumerate(ARGOCD_WORKLOADS):
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "argocd"}
        store.put(workload(kind, name, "argocd", labels))
        suffix = "0" if kind == "StatefulSet" else f"7c9d8f6b5-q{index}z4m"
        store.put(
            pod(
                f"{name}-{suffix}",
                "argocd",
                "quay.io/argoproj/argocd:v2.13.2",
                labels,
                NODES[index % 3],
                ip=f"10.42.{index % 3}.{20 + index}",
            )
        )
    store.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(
                "argocd-server", "argocd", **{"app.kubernetes.io/name": "argocd-server"}
            ),
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.43.12.34",
                "selector": {"app.kubernetes.io/name": "argocd-server"},
                "ports": [
                    {
                        "name": "http",
                        "port": 80,
                        "protocol": "TCP",
                        "targetPort": 8080,
                        "nodePort": 30080,
                    },
                    {
                        "name": "https",
                        "port": 443,
                        "protocol": "TCP",
                        "targetPort": 8080,
                        "nodePort": 30443,
                    },
                ],
            },
        }
    )
    store.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta("argocd-initial-admin-secret", "argocd"),
            "type": "Opaque",
            "data": {"password": _b64(ADMIN_PASSWORD)},
        }
    )
    store.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(
                "labkit-gitops-repo", "argocd", **{"argocd.argoproj.io/secret-type": "repository"}
            ),
            "type": "Opaque",
            "data": {"type": _b64("git"), "url": _b64(REPO_URL)},
        }
    )


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


# -- breakages ------------------------------------------------------------------------------


def node_not_ready(store: Store, name: str) -> None:
    """``name`` stops posting status: Ready becomes Unknown."""
    index = NODES.index(name)
    store.put(node(name, index, ready=False))


def pod_crashing(store: Store, namespace_name: str, prefix: str) -> None:
    """The first pod whose name starts with ``prefix`` crash-loops; its workload is not ready."""
    for key, data in list(store.objects.items()):
        if key[1] == "pods" and key[2] == namespace_name and key[3].startswith(prefix):
            status = data["status"]
            status["conditions"][0]["status"] = "False"
            image = status["containerStatuses"][0]["image"]
            container = status["containerStatuses"][0]["name"]
            status["containerStatuses"] = [container_status(container, image, ready=False)]
            store.logs[(namespace_name, key[3], container)] = (
                'starting\nlevel=fatal msg="cannot listen on :8080: address already in use"\n'
            )
            return
    raise KeyError(f"no pod {prefix}* in {namespace_name}")


def application_degraded(store: Store, name: str) -> None:
    """Application ``name`` is OutOfSync and Degraded, its Deployment failing."""
    store.put(application(name, sync="OutOfSync", health="Degraded"))


def traefik_present(store: Store) -> None:
    """K3s's bundled Traefik is running (``--disable traefik`` was not applied)."""
    labels = {
        "app.kubernetes.io/name": "traefik",
        "app.kubernetes.io/instance": "traefik-kube-system",
    }
    store.put(workload("Deployment", "traefik", "kube-system", labels))
    store.put(
        pod(
            "traefik-6f5f4b7c8d-abcde",
            "kube-system",
            "rancher/mirrored-library-traefik:3.3.6",
            labels,
        )
    )


def no_default_storage_class(store: Store) -> None:
    """The StorageClass is there but no longer marked default."""
    data = store.objects[("storage.k8s.io", "storageclasses", "", "local-path")]
    data["metadata"]["annotations"] = {}


# -- the scripted kubelet -------------------------------------------------------------------


@dataclass
class Kubelet:
    """Runs pods labkit creates: IP, phase, log; pod network, DNS and storage can be broken."""

    pod_network: bool = True
    dns: bool = True
    storage: bool = True
    run: bool = True  # False: pods stay Pending (image cannot be pulled)
    # Where an nginx pod's port 80 is served (a loopback stand-in), for the pod proxy.
    web: tuple[str, int] | None = None
    backends: dict[tuple[str, str, str], tuple[str, int]] | None = None

    def __call__(self, store: Store, verb: str, data: dict[str, Any]) -> None:
        if (
            verb not in {"create", "apply"}
            or data.get("kind") != "Pod"
            or data.get("status", {}).get("phase")
        ):
            return
        metadata = data["metadata"]
        key = ("", "pods", metadata["namespace"], metadata["name"])
        stored = store.objects.get(key)
        if stored is None:
            return
        spec = stored.get("spec", {})
        node_name = spec.get("nodeName") or NODES[0]
        index = NODES.index(node_name) if node_name in NODES else 0
        ip = f"10.42.{index}.{100 + len(store.objects) % 150}"
        containers = spec.get("containers") or [{"name": "main", "image": "busybox"}]
        container = containers[0]
        command = " ".join(container.get("command", []) + container.get("args", []))
        phase, log, ready = "Running", "", True
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in spec.get("volumes", [])
            if "persistentVolumeClaim" in v
        ]
        if not self.run:
            stored["status"] = {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container.get("image", ""),
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "waiting": {
                                "reason": "ImagePullBackOff",
                                "message": "Back-off pulling image",
                            }
                        },
                    }
                ],
            }
            return
        for claim in claims:
            pvc = store.objects.get(("", "persistentvolumeclaims", metadata["namespace"], claim))
            if pvc is None or not self.storage:
                phase, ready = "Pending", False
                continue
            pvc["status"] = {
                "phase": "Bound",
                "accessModes": pvc["spec"].get("accessModes", []),
                "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
            }
            pvc["spec"]["volumeName"] = f"pvc-{pvc['metadata']['uid']}"
        if "nslookup" in command:
            if self.dns:
                log = (
                    "Server:\t\t10.43.0.10\nAddress:\t10.43.0.10:53\n\n"
                    "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.43.0.1\n"
                )
                phase = "Succeeded"
            else:
                log = ";; connection timed out; no servers could be reached\n"
                phase = "Failed"
        elif "wget" in command:
            target = re.search(r"http://([0-9.]+):", command)
            server = [
                p
                for k, p in store.objects.items()
                if k[1] == "pods" and target and p.get("status", {}).get("podIP") == target.group(1)
            ]
            if self.pod_network and server and server[0]["status"].get("phase") == "Running":
                log, phase = "labkit-pong\n", "Succeeded"
            else:
                log, phase = "wget: download timed out\n", "Failed"
        if phase in {"Succeeded", "Failed"}:
            ready = False
        state: dict[str, Any] = {"running": {"startedAt": TIME}}
        if phase in {"Succeeded", "Failed"}:
            state = {
                "terminated": {
                    "exitCode": 0 if phase == "Succeeded" else 1,
                    "reason": "Completed" if phase == "Succeeded" else "Error",
                    "startedAt": TIME,
                    "finishedAt": TIME,
                }
            }
        elif phase == "Pending":
            state = {"waiting": {"reason": "ContainerCreating"}}
        stored["status"] = {
            "phase": phase,
            "podIP": ip if phase != "Pending" else None,
            "hostIP": f"192.0.2.{11 + index}",
            "startTime": TIME,
            "conditions": [
                {"type": "Ready", "status": "True" if ready and phase == "Running" else "False"},
                {
                    "type": "PodScheduled",
                    "status": "True" if phase != "Pending" or not claims else "False",
                },
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": ready and phase == "Running",
                    "restartCount": 0,
                    "state": state,
                }
            ],
        }
        if stored["status"]["podIP"] is None:
            del stored["status"]["podIP"]
        stored["spec"]["nodeName"] = node_name
        if log:
            store.logs[(metadata["namespace"], metadata["name"], container["name"])] = log
        image = str(container.get("image", ""))
        if image.startswith("nginx") and self.web and self.backends is not None:
            self.backends[(metadata["namespace"], metadata["name"], "80")] = self.web


# -- scripted controllers -------------------------------------------------------------------


def k3s_only(store: Store) -> None:
    """A lab after phase 1.3: nodes, kube-system and storage, no ArgoCD yet."""
    healthy_lab(store)
    for key in [key for key in store.objects if key[2] == "argocd" or key[0] == "argoproj.io"]:
        del store.objects[key]
    del store.objects[("", "namespaces", "", "argocd")]
    for name in ("applications.argoproj.io", "appprojects.argoproj.io"):
        del store.objects[("apiextensions.k8s.io", "customresourcedefinitions", "", name)]
    store.resources[:] = [r for r in store.resources if r.group != "argoproj.io"]


@dataclass
class Controllers:
    """What the cluster's controllers would do after labkit applies something.

    A Deployment or StatefulSet becomes ready with one Running pod; ArgoCD's server
    writes its initial admin secret; an Application is reconciled to ``app_sync`` and
    ``app_health`` (after ``app_delay_s``, so a wait sees it change).
    """

    app_sync: str = "Synced"
    app_health: str = "Healthy"
    app_delay_s: float = 0.0

    def __call__(self, store: Store, verb: str, data: dict[str, Any]) -> None:
        if verb not in {"create", "apply"}:
            return
        kind = data.get("kind")
        metadata = data["metadata"]
        if kind in {"Deployment", "StatefulSet"} and not data.get("status"):
            labels = (data["spec"].get("selector") or {}).get("matchLabels") or {}
            key = ("apps", f"{kind.lower()}s", metadata["namespace"], metadata["name"])
            replicas = int(data["spec"].get("replicas", 1))
            store.objects[key]["status"] = {
                "observedGeneration": metadata.get("generation", 1),
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
            }
            name = metadata["name"] + ("-0" if kind == "StatefulSet" else "-5b7d9c8f6-abcde")
            image = data["spec"]["template"]["spec"]["containers"][0].get("image", "")
            store.put(pod(name, metadata["namespace"], image, labels))
            if metadata["name"] == "argocd-server" and (
                ("", "secrets", metadata["namespace"], "argocd-initial-admin-secret")
                not in store.objects
            ):
                store.put(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {
                            "name": "argocd-initial-admin-secret",
                            "namespace": metadata["namespace"],
                        },
                        "type": "Opaque",
                        "data": {"password": _b64(ADMIN_PASSWORD)},
                    }
                )
        if kind == "Application" and not data.get("status"):
            name = metadata["name"]
            path = (data.get("spec", {}).get("source") or {}).get("path")

            def reconcile(store: Store = store) -> None:
                status = application(name, self.app_sync, self.app_health, path)["status"]
                store.update_status(
                    "argoproj.io/v1alpha1", "Application", metadata["namespace"], name, status
                )

            if self.app_delay_s:
                store.update_status(
                    "argoproj.io/v1alpha1",
                    "Application",
                    metadata["namespace"],
                    name,
                    {"sync": {"status": "Unknown"}, "health": {"status": "Progressing"}},
                )
                timer = threading.Timer(self.app_delay_s, reconcile)
                timer.daemon = True
                timer.start()
            else:
                reconcile()
