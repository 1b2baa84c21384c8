"""Reaching a Service inside the cluster without a hand-made port-forward.

``open_service`` resolves a Service to one of its Ready pods and the port its
``targetPort`` names, listens on 127.0.0.1 (a port the kernel picks) and, for
every connection it accepts, opens a port-forward to that pod through the API
(a websocket, as ``kubectl port-forward`` does) and relays bytes both ways.
Everything is closed when the ``with`` block ends. PostgreSQL, Redis and
Sentinel clients connect to the yielded address as if it were local.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from kubernetes.stream import ws_client

from labkit.cluster.streams import open_stream
from labkit.cluster.waits import pod_ready
from labkit.errors import ClusterError, ConnectError, LabkitError, NotFound
from labkit.secrets import redact

__all__ = ["open_service", "service_endpoint"]


class Cluster(Protocol):
    """What forwarding needs of labkit.cluster.client.Cluster."""

    timeout_s: float

    @property
    def api_client(self) -> Any:
        """The kubernetes ApiClient."""

    def require(
        self, kind: str, name: str, namespace: str | None = None, api_version: str | None = None
    ) -> dict[str, Any]:
        """The object, or NotFound."""

    def list(
        self, kind: str, namespace: str | None = None, labels: Any = None
    ) -> list[dict[str, Any]]:
        """Objects of a kind."""


_CHUNK = 65536
_log = logging.getLogger("labkit.cluster")


def _target_port(service: dict[str, Any], port: int | str, pod: dict[str, Any]) -> int:
    """The pod port the Service's ``port`` (number or name) forwards to."""
    entries = (service.get("spec") or {}).get("ports") or []
    entry = next((p for p in entries if port in {p.get("port"), p.get("name")}), None)
    if entry is None:
        shown = [f"{p.get('name', '')}:{p.get('port')}" for p in entries]
        raise NotFound(
            f"Service {service['metadata']['namespace']}/{service['metadata']['name']} has no "
            f"port {port} (ports: {shown})"
        )
    target = entry.get("targetPort", entry.get("port"))
    if isinstance(target, int):
        return target
    if str(target).isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == target:
                return int(declared["containerPort"])
    raise NotFound(f"pod {pod['metadata']['name']} declares no container port named {target!r}")


def service_endpoint(
    cluster: Cluster, namespace: str, service: str, port: int | str
) -> tuple[str, int]:
    """(a Ready pod behind the Service, the pod port to forward to)."""
    found = cluster.require("Service", service, namespace)
    selector = (found.get("spec") or {}).get("selector") or {}
    if not selector:
        raise ClusterError(
            f"Service {namespace}/{service} has no selector: labkit cannot pick a pod to "
            "forward to; name a pod instead"
        )
    pods = [p for p in cluster.list("Pod", namespace, labels=selector) if pod_ready(p)]
    if not pods:
        raise ConnectError(
            f"Service {namespace}/{service} has no Ready pod (selector {selector}); "
            f"check its pods: `kubectl get pods -n {namespace}`"
        )
    pod = sorted(pods, key=lambda p: str(p["metadata"]["name"]))[0]
    return str(pod["metadata"]["name"]), _target_port(found, port, pod)


def _relay(one: Any, other: Any, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes or ``stop`` is set."""
    sockets = [one, other]
    try:
        while not stop.is_set():
            readable, _, _ = select.select(sockets, [], [], 0.2)
            for sock in readable:
                data = sock.recv(_CHUNK)
                if not data:
                    return
                (other if sock is one else one).sendall(data)
    except OSError:
        return
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


class _Forwarder:
    """A loopback listener whose every connection is forwarded to ``pod:port``."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, port: int) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.pod = pod
        self.port = port
        self.stop = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """Where local clients connect."""
        host, port = self.listener.getsockname()[:2]
        return str(host), int(port)

    def _open(self) -> Any:
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.pod}/portforward"
        what = f"port-forward to pod {self.namespace}/{self.pod}:{self.port}"
        stream = open_stream(
            self.cluster.api_client, path, [("ports", str(self.port))], self.cluster.timeout_s, what
        )
        return ws_client.PortForward(stream, [self.port])  # type: ignore[no-untyped-call]

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                local, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                forward = self._open()
            except LabkitError as exc:
                _log.warning(
                    "port-forward to pod %s/%s:%s failed: %s",
                    self.namespace,
                    self.pod,
                    self.port,
                    redact(f"{type(exc).__name__}: {exc}"),
                )
                local.close()
                continue
            remote = forward.socket(self.port)
            thread = threading.Thread(
                target=_relay, args=(local, remote._socket, self.stop), daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=5)
        for thread in self.threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def open_service(
    cluster: Cluster, namespace: str, service: str, port: int | str
) -> Iterator[tuple[str, int]]:
    """Forward a local port to ``service:port`` through the API; yields ("127.0.0.1", port).

    The forward lasts for the ``with`` block; each connection gets its own stream.
    """
    pod, target = service_endpoint(cluster, namespace, service, port)
    forwarder = _Forwarder(cluster, namespace, pod, target)
    forwarder.thread.start()
    try:
        yield forwarder.address
    finally:
        forwarder.close()
