"""A Kubernetes API double over real HTTP on loopback, for the official client unchanged.

How a test builds a cluster state::

    from tests.kubeapi import KubeApi, fixtures

    with KubeApi() as api:                         # 127.0.0.1:<ephemeral>, bearer token
        fixtures.healthy_lab(api.store)            # nodes, kube-system, ArgoCD, apps...
        fixtures.node_not_ready(api.store, "k3s-node-02")   # then break one thing
        lab = api.lab(tmp_path)                    # a homelab-kind Lab whose kubeconfig
        with Cluster.open(lab) as cluster:         #   points here (allow-list: 127.0.0.1)
            ...

``api.store`` holds the objects (``put`` a fixture with its status, ``update_status``
as a controller would, ``logs[(ns, pod, container)]`` for ``pods/log``,
``exec_handlers[(ns, pod)] = fn(argv, container) -> (exit code, stdout, stderr)``
for ``pods/exec``); ``api.store.hooks`` are scripted controllers run after every
write (``fixtures.Kubelet`` runs the pods checks create, ``fixtures.Controllers``
makes applied workloads ready and syncs Applications); ``api.schedule(seconds, fn)``
changes state later (waits that succeed) and ``api.requests()`` is what crossed the
wire (method, path, query, content type, body).
``api.wire.backends[(ns, service_or_pod, port)] = (host, port)`` makes the service
and pod proxy, and port-forward, relay to a loopback server the test started
(``tests/kubeapi/backends.py`` has nginx and argocd-server stand-ins; a real
redis-server works too). ``fixtures.k3s_only`` is a lab before phase 1.5.

Fixtures are shaped like a real cluster's objects (status included);
tests/cluster/test_fixtures.py validates them against Kubernetes' schemas and the
CRD schemas in labkit/data/crd-schemas.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import yaml

from tests.kubeapi.server import Wire, _Server
from tests.kubeapi.store import ApiFailure, Resource, Store

__all__ = ["ApiFailure", "KubeApi", "Resource", "Store", "Wire"]

TOKEN = "double-token-7c1e9a"  # the kubeconfig's bearer token; labkit must mask it


class KubeApi:
    """A running double: ``store`` (objects), ``wire`` (requests seen), ``url``."""

    def __init__(self, host: str = "127.0.0.1", token: str = TOKEN) -> None:
        self.store = Store()
        self.wire = Wire(token=token)
        self.client_token = token  # what kubeconfigs written from now on hold
        self._server = _Server((host, 0), self.store, self.wire)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timers: list[threading.Timer] = []

    @property
    def url(self) -> str:
        """The API server's URL, as a kubeconfig names it."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> KubeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for timer in self._timers:
            timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def schedule(self, seconds: float, action: Any) -> None:
        """Run ``action(store)`` after ``seconds`` (state that changes while labkit waits)."""
        timer = threading.Timer(seconds, action, args=(self.store,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def requests(self, method: str | None = None) -> list[Any]:
        """Requests seen so far (of ``method`` when given)."""
        with self.wire.lock:
            return [r for r in self.wire.requests if method is None or r.method == method]

    def kubeconfig(self, path: Path, context: str = "double") -> Path:
        """Write a kubeconfig reaching this double as ``context``; returns its path."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": self.client_token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        path.chmod(0o600)
        return path

    def params(self, directory: Path, **sections: Any) -> Path:
        """A homelab-kind params file whose cluster is this double (extends params/homelab)."""
        from tests.kubeapi.fixtures import lab_params

        return lab_params(self, directory, **sections)

    def lab(self, directory: Path, **sections: Any) -> Any:
        """The Lab of ``params(directory)``."""
        from labkit.params import load_lab

        return load_lab(self.params(directory, **sections))
