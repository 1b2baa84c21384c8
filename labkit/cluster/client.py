"""Cluster: the one place labkit talks to the Kubernetes API (the official client, dynamic).

Opened from the kubeconfig phase 1 saved (params ``cluster.kubeconfig`` or
``k3s.kubeconfig``, context ``cluster.context`` or the current one); the API
server's address is checked against the lab's allow-list before any request.
Every request carries a timeout. Objects go in and out as plain dicts; kinds
resolve through discovery (core, apps, CRDs alike). Errors become LabkitError
children naming the verb, the object and what to try.
"""

from __future__ import annotations

import base64
import builtins
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import (
    DynamicApiError,
    ResourceNotFoundError,
    ResourceNotUniqueError,
)

from labkit.cluster.streams import open_stream, run_command
from labkit.cluster.waits import (
    Progress,
    Verdict,
    condition_status,
    object_evidence,
    rollout_status,
    wait_until,
)
from labkit.errors import (
    ApplyConflict,
    ClusterError,
    ConfigError,
    ConnectError,
    LabkitError,
    NotFound,
)
from labkit.files import read_regular
from labkit.params import Lab, yaml_document
from labkit.secrets import Secret, register

__all__ = ["FIELD_MANAGER", "Cluster", "ExecResult", "describe", "kubeconfig_path"]

FIELD_MANAGER = "labkit"
# A kubeconfig names a few clusters; its certificates make it a few KB each.
_MAX_KUBECONFIG = 4 * 1024 * 1024
_CREDENTIAL_KEYS = ("token", "client-key-data", "client-certificate-data", "password")


def kubeconfig_path(lab: Lab) -> Path:
    """The kubeconfig labkit uses for ``lab``: ``cluster.kubeconfig``, else ``k3s.kubeconfig``."""
    return lab.path(lab.cluster.kubeconfig or lab.k3s.kubeconfig)


def describe(manifest: Mapping[str, Any]) -> str:
    """``Deployment argocd/argocd-server`` (or ``Namespace argocd``) for messages and plans."""
    metadata = manifest.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = metadata.get("name", "?")
    return f"{manifest.get('kind', '?')} {namespace + '/' if namespace else ''}{name}"


def _object_name(kind: str, name: str, namespace: str | None) -> str:
    return f"{kind} {namespace + '/' if namespace else ''}{name}"


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a pod returned."""

    exit_code: int
    stdout: str
    stderr: str


class _TimedClient(DynamicClient):  # the kubernetes client is untyped (Any)
    """The dynamic client with a timeout on every request, discovery's included."""

    def __init__(self, client: Any, cache_file: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s  # set first: the base class discovers while it initialises
        super().__init__(client, cache_file=cache_file)  # type: ignore[no-untyped-call]

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        params.setdefault("_request_timeout", self.timeout_s)
        return super().request(method, path, body, **params)


def _read_kubeconfig(path: Path, context: str | None) -> tuple[str, str, dict[str, Any]]:
    """(context name, server URL, cluster entry) from the kubeconfig; ConfigError when unusable."""
    raw = read_regular(
        path,
        f"kubeconfig {path}",
        kind="a kubeconfig",
        limit=_MAX_KUBECONFIG,
        hint="run phase 1's kubeconfig step (`labkit apply --phase 1`) "
        "or set cluster.kubeconfig in params",
    )
    try:
        document = yaml_document(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "unreadable"
        raise ConfigError(
            f"kubeconfig {path} is not valid YAML ({problem}); fetch it again"
        ) from None
    if not isinstance(document, dict):
        raise ConfigError(f"kubeconfig {path} is not a kubeconfig (no mapping at the top)")
    for user in document.get("users") or []:  # mask credentials before anything can print them
        for key, value in ((user or {}).get("user") or {}).items():
            if key in _CREDENTIAL_KEYS and isinstance(value, str):
                register(value)
    name = context or document.get("current-context") or ""
    contexts = {c.get("name"): c.get("context") or {} for c in document.get("contexts") or []}
    if name not in contexts:
        raise ConfigError(
            f"kubeconfig {path} has no context {name!r} (contexts: {sorted(contexts)}); "
            "set cluster.context in params to one of them"
        )
    clusters = {c.get("name"): c.get("cluster") or {} for c in document.get("clusters") or []}
    entry = clusters.get(contexts[name].get("cluster"))
    if not entry or not entry.get("server"):
        raise ConfigError(f"kubeconfig {path}: context {name!r} names no cluster with a server")
    return name, str(entry["server"]), entry


class Cluster:
    """A Kubernetes context: kubectl-shaped verbs over the API, errors that say what to try.

    Use as a context manager (``with Cluster.open(lab) as cluster:``) or call ``close()``.
    """

    def __init__(
        self,
        api_client: Any,
        context: str,
        server: str,
        timeout_s: float = 15.0,
        wait_timeout_s: float = 600.0,
    ) -> None:
        self._api = api_client
        self.context = context
        self.server = server
        self.timeout_s = timeout_s
        self.wait_timeout_s = wait_timeout_s
        self._cache_dir = tempfile.mkdtemp(prefix="labkit-discovery-")
        self._dynamic: _TimedClient | None = None

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    def open(cls, lab: Lab) -> Cluster:
        """The lab's cluster; NotAllowed before any request when its server is not allowed."""
        path = kubeconfig_path(lab)
        context, server, entry = _read_kubeconfig(path, lab.cluster.context)
        host = urlsplit(server).hostname or ""
        lab.require_allowed(host)  # raises before a single byte goes to the server
        proxy = str(entry.get("proxy-url") or "")
        if proxy:
            lab.require_allowed(urlsplit(proxy).hostname or "")
        configuration = k8s_client.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        if not entry.get("proxy-url"):
            # Never a proxy from the environment: it would carry the credentials off the lab.
            configuration.proxy = None
        configuration.retries = 1
        return cls(
            k8s_client.ApiClient(configuration),
            context,
            server,
            lab.cluster.request_timeout_s,
            lab.cluster.wait_timeout_s,
        )

    def close(self) -> None:
        """Release connections and the discovery cache."""
        self._api.close()
        shutil.rmtree(self._cache_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cluster({self.context} at {self.server})"

    @property
    def dynamic(self) -> Any:
        """The dynamic client (discovery happens on first use)."""
        if self._dynamic is None:
            with self._translated("discover", "the API's resources"):
                self._dynamic = _TimedClient(
                    self._api, str(Path(self._cache_dir) / "discovery.json"), self.timeout_s
                )
        return self._dynamic

    def refresh_discovery(self) -> None:
        """Forget discovered kinds (after CRDs are installed)."""
        if self._dynamic is not None:
            with self._translated("discover", "the API's resources"):
                self._dynamic.resources.invalidate_cache()

    # -- errors ----------------------------------------------------------------------------

    @contextmanager
    def _translated(self, verb: str, what: str) -> Iterator[None]:
        try:
            yield
        except (ApiException, DynamicApiError) as exc:
            raise self._api_error(verb, what, exc) from None
        except ResourceNotFoundError as exc:
            raise NotFound(
                f"{verb} {what} on {self.context}: the API serves no such kind ({exc}); "
                "is its CRD installed (and Established)? check the apiVersion and kind"
            ) from None
        except ResourceNotUniqueError as exc:
            raise ClusterError(
                f"{verb} {what} on {self.context}: the kind is ambiguous ({exc}); "
                "give its apiVersion"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ConnectError(
                f"{verb} {what}: cannot reach the API server {self.server} "
                f"({type(exc).__name__}: {exc}); is K3s running, and is the kubeconfig's "
                "server address right?"
            ) from None

    def _api_error(self, verb: str, what: str, exc: Any) -> LabkitError:
        status = getattr(exc, "status", 0) or 0
        body: dict[str, Any] = {}
        raw = getattr(exc, "body", None)
        if raw:
            try:
                body = json.loads(raw)
            except (TypeError, ValueError):
                body = {}
        message = body.get("message") or getattr(exc, "reason", "") or str(exc)
        where = f"{verb} {what} on {self.context}"
        if status == 0:  # the websocket transport reports its failures this way
            return ConnectError(
                f"{where}: {message}; is the API server {self.server} reachable, and does it "
                "allow exec/port-forward?"
            )
        if status == 404:
            hint = ""
            if verb.startswith("apply") and message.startswith("namespaces "):
                hint = "; create the namespace first (put it earlier in the same manifests)"
            return NotFound(f"{where}: not found ({message}){hint}")
        if status == 409 and verb.startswith("apply"):
            causes = (body.get("details") or {}).get("causes") or []
            conflicts = [
                (str(c.get("field", "?")), str(c.get("message", "")).removeprefix("conflict with "))
                for c in causes
            ]
            listed = "; ".join(f"{field} is managed by {manager}" for field, manager in conflicts)
            return ApplyConflict(
                f"{where}: conflict: {listed or message}; another tool changed these fields. "
                "Remove them from the manifest, or apply with force=True to take them over",
                conflicts,
            )
        if status in {401, 403}:
            return ClusterError(
                f"{where}: refused ({status} {message}); the kubeconfig's credentials are "
                "wrong or lack permission: fetch the kubeconfig again (phase 1)"
            )
        if status in {400, 422}:
            return ClusterError(f"{where}: the API rejected the object ({message}); fix it")
        return ClusterError(f"{where}: the API answered {status} ({message})")

    # -- kinds -----------------------------------------------------------------------------

    def _resource(self, kind: str, api_version: str | None = None) -> Any:
        what = f"kind {kind}" + (f" ({api_version})" if api_version else "")
        with self._translated("resolve", what):
            resources = self.dynamic.resources
            if api_version:
                return resources.get(api_version=api_version, kind=kind)
            found = [
                r
                for r in resources.search(kind=kind)
                if "/" not in r.name and getattr(r, "group_version", None)
            ]
            if not found:
                raise ResourceNotFoundError(f"no kind {kind}")
            found.sort(key=lambda r: (r.group != "", r.group))  # core first, then by group
            return found[0]

    # -- verbs -----------------------------------------------------------------------------

    def version(self) -> str:
        """The API server's gitVersion (``v1.31.12+k3s1``)."""
        with self._translated("get", "/version"):
            answer = json.loads(self._raw("GET", "/version", []))
        return str(answer.get("gitVersion", ""))

    def get(
        self, kind: str, name: str, namespace: str | None = None, api_version: str | None = None
    ) -> dict[str, Any] | None:
        """The object as a dict, or None when it does not exist."""
        resource = self._resource(kind, api_version)
        try:
            with self._translated("get", _object_name(kind, name, namespace)):
                found = resource.get(name=name, namespace=namespace)
        except NotFound:
            return None
        data: dict[str, Any] = found.to_dict()
        return data

    def require(
        self, kind: str, name: str, namespace: str | None = None, api_version: str | None = None
    ) -> dict[str, Any]:
        """The object; NotFound names it when it does not exist."""
        found = self.get(kind, name, namespace, api_version)
        if found is None:
            raise NotFound(
                f"{_object_name(kind, name, namespace)} does not exist on {self.context}; "
                "has its phase been applied?"
            )
        return found

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Whether the object exists."""
        return self.get(kind, name, namespace) is not None

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        labels: str | Mapping[str, str] | None = None,
        fields: str | None = None,
        api_version: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Objects of ``kind`` (in ``namespace``, or every namespace), filtered by selectors."""
        resource = self._resource(kind, api_version)
        selector = (
            ",".join(f"{k}={v}" for k, v in labels.items())
            if isinstance(labels, Mapping)
            else labels
        )
        where = f"{kind} in {namespace or 'all namespaces'}"
        with self._translated("list", where):
            found = resource.get(
                namespace=namespace, label_selector=selector, field_selector=fields
            )
        items: builtins.list[dict[str, Any]] = found.to_dict().get("items") or []
        return items

    def apply(
        self,
        manifest: Mapping[str, Any],
        force: bool = False,
        dry_run: bool = False,
        namespace: str | None = None,
        field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """Server-side apply (field manager ``labkit``); returns the object the server holds.

        ``namespace`` fills in a namespaced object that names none. A field another
        manager owns raises ApplyConflict naming it, unless ``force``. Another
        ``field_manager`` keeps a set of fields apart (a second owner of one object).
        """
        body = json.loads(json.dumps(dict(manifest)))  # a deep, JSON-clean copy
        kind = str(body.get("kind", ""))
        resource = self._resource(kind, body.get("apiVersion"))
        metadata = body.setdefault("metadata", {})
        if resource.namespaced and not metadata.get("namespace"):
            if not namespace:
                raise ConfigError(
                    f"{describe(body)} is namespaced but names no namespace; set "
                    "metadata.namespace or pass namespace="
                )
            metadata["namespace"] = namespace
        if not resource.namespaced:
            metadata.pop("namespace", None)
        options: dict[str, Any] = {"field_manager": field_manager}
        if force:
            options["force_conflicts"] = "true"
        if dry_run:
            options["dry_run"] = "All"
        verb = "apply (dry run)" if dry_run else "apply"
        with self._translated(verb, describe(body)):
            answer = self.dynamic.server_side_apply(
                resource, body=body, namespace=metadata.get("namespace"), **options
            )
        data: dict[str, Any] = answer.to_dict()
        return data

    def apply_all(
        self,
        manifests: Iterable[Mapping[str, Any]] | str,
        force: bool = False,
        namespace: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Apply several objects in order (multi-document YAML text or dicts)."""
        from labkit.cluster.documents import parse_documents  # noqa: PLC0415 - no cycle

        documents = parse_documents(manifests) if isinstance(manifests, str) else manifests
        applied = []
        for document in documents:
            applied.append(self.apply(document, force=force, namespace=namespace))
            if document.get("kind") == "CustomResourceDefinition":
                self.refresh_discovery()
        return applied

    def delete(
        self, kind: str, name: str, namespace: str | None = None, api_version: str | None = None
    ) -> bool:
        """Delete the object; False when it was already gone."""
        resource = self._resource(kind, api_version)
        try:
            with self._translated("delete", _object_name(kind, name, namespace)):
                resource.delete(name=name, namespace=namespace)
        except NotFound:
            return False
        return True

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create (POST) an object that must not exist yet (short-lived test objects)."""
        body = json.loads(json.dumps(dict(manifest)))
        resource = self._resource(str(body.get("kind")), body.get("apiVersion"))
        namespace = body.get("metadata", {}).get("namespace")
        with self._translated("create", describe(body)):
            answer = resource.create(body=body, namespace=namespace)
        data: dict[str, Any] = answer.to_dict()
        return data

    def logs(
        self, pod: str, namespace: str, container: str | None = None, tail_lines: int = 50
    ) -> str:
        """The last ``tail_lines`` lines of a pod's (container's) log."""
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        query: builtins.list[tuple[str, Any]] = [("tailLines", tail_lines)]
        if container:
            query.append(("container", container))
        where = f"log of pod {namespace}/{pod}" + (f" container {container}" if container else "")
        with self._translated("get", where):
            response = self._raw("GET", path, query)
        return response

    def events(
        self, namespace: str, name: str | None = None, kind: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Events in ``namespace`` (about ``kind``/``name`` when given), oldest first."""
        fields = []
        if name:
            fields.append(f"involvedObject.name={name}")
        if kind:
            fields.append(f"involvedObject.kind={kind}")
        found = self.list("Event", namespace, fields=",".join(fields) or None, api_version="v1")
        return sorted(
            found,
            key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""),
        )

    def secret_value(self, namespace: str, name: str, key: str) -> Secret:
        """A key of a Secret, base64-decoded, as a masked Secret; NotFound names what is missing."""
        where = f"Secret {namespace}/{name}"
        found = self.get("Secret", name, namespace, api_version="v1")
        if found is None:
            raise NotFound(f"{where} does not exist on {self.context}; has its phase been applied?")
        data = found.get("data") or {}
        if key not in data:
            raise NotFound(f"{where} has no key {key!r} (keys: {sorted(data)})")
        register(str(data[key]))  # its base64 form is as secret as the value
        try:
            text = base64.b64decode(data[key], validate=True).decode("utf-8").strip()
        except (ValueError, UnicodeDecodeError):
            raise ClusterError(f"{where} key {key!r} is not base64 of UTF-8 text") from None
        return Secret(text, f"Kubernetes secret {namespace}/{name}/{key}")

    def proxy(
        self,
        namespace: str,
        service: str,
        port: int | str,
        path: str = "/",
        method: str = "GET",
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        kind: str = "services",
    ) -> tuple[int, str]:
        """An HTTP request to a Service (or a Pod, ``kind="pods"``) through the API's proxy.

        ``port`` may carry a scheme (``"https:argocd-server:443"`` is written as service
        ``"https:argocd-server"``, port 443). ``json_body`` is sent as JSON. Returns
        (HTTP status, body text); the backend's own error statuses are returned, not raised.
        """
        target = f"/api/v1/namespaces/{namespace}/{kind}/{service}:{port}/proxy/"
        target += path.lstrip("/")
        sent = {"Content-Type": "application/json"} if json_body is not None else {}
        with self._translated(method.lower(), f"{kind} {namespace}/{service}:{port}{path}"):
            response = self._api.rest_client.request(
                method,
                self._api.configuration.host + target,
                headers={**self._auth_headers(), **sent, **(headers or {})},
                body=json_body,
                _request_timeout=self.timeout_s,
            )
            return int(response.status), response.read().decode("utf-8", "replace")

    @property
    def api_client(self) -> Any:
        """The underlying ``kubernetes.client.ApiClient`` (for labkit.cluster's own modules)."""
        return self._api

    def open_service(
        self, namespace: str, service: str, port: int | str
    ) -> AbstractContextManager[tuple[str, int]]:
        """A local (host, port) forwarded to ``service:port`` for a ``with`` block.

        Port-forward through the API to one of the Service's Ready pods; closed after.
        """
        from labkit.cluster.forward import open_service  # noqa: PLC0415 - no cycle

        return open_service(self, namespace, service, port)

    def exec(
        self,
        pod: str,
        namespace: str,
        command: builtins.list[str],
        container: str | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult:
        """Run ``command`` in a pod's container (like ``kubectl exec``); its exit code and output.

        A command that runs and fails is a result with its exit code, not an error; a pod
        that does not exist is NotFound; one that does not finish in time is WaitTimeout.
        """
        where = f"pod {namespace}/{pod}" + (f" container {container}" if container else "")
        self.require("Pod", pod, namespace, api_version="v1")
        query = [("command", part) for part in command]
        query += [("stdout", "true"), ("stderr", "true"), ("stdin", "false"), ("tty", "false")]
        if container:
            query.append(("container", container))
        what = f"exec {' '.join(command)!r} in {where} on {self.context}"
        stream = open_stream(
            self._api,
            f"/api/v1/namespaces/{namespace}/pods/{pod}/exec",
            query,
            self.timeout_s,
            what,
        )
        return ExecResult(*run_command(stream, timeout_s or self.timeout_s, what))

    # -- waits -----------------------------------------------------------------------------

    def wait(
        self,
        what: str,
        probe: Callable[[], Verdict],
        timeout_s: float | None = None,
        progress: Progress | None = None,
        evidence: Callable[[], str] | None = None,
        interval_s: float = 1.0,
    ) -> str:
        """Poll ``probe`` (-> (done, what it saw)) until done; WaitTimeout with evidence."""
        return wait_until(
            what, probe, timeout_s or self.wait_timeout_s, interval_s, progress, evidence
        )

    def wait_for(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        condition: str | None = None,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout_s: float | None = None,
        progress: Progress | None = None,
        describe_state: Callable[[dict[str, Any]], str] | None = None,
    ) -> dict[str, Any]:
        """Wait until the object exists and ``condition`` is True (or ``predicate`` holds).

        Returns the object as last read. The timeout names the object, the condition,
        what was seen last, its Events and its failing containers' last log lines.
        """
        held: dict[str, Any] = {}
        target = _object_name(kind, name, namespace)
        wanted = f"condition {condition}=True" if condition else "its predicate"

        def probe() -> Verdict:
            found = self.get(kind, name, namespace)
            if found is None:
                return False, "absent"
            held["object"] = found
            if condition:
                status = condition_status(found, condition)
                done = status == "True"
            else:
                done = predicate(found) if predicate else True
            shown = describe_state(found) if describe_state else _state_summary(found)
            return done, shown

        self.wait(
            f"{target} ({wanted})",
            probe,
            timeout_s,
            progress,
            lambda: object_evidence(self, kind, name, namespace),
        )
        return dict(held["object"])

    def rollout(
        self,
        kind: str,
        name: str,
        namespace: str,
        timeout_s: float | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Wait until a Deployment, StatefulSet or DaemonSet has rolled out completely."""
        held: dict[str, Any] = {}

        def probe() -> Verdict:
            found = self.get(kind, name, namespace)
            held["object"] = found
            return rollout_status(found)

        def evidence() -> str:
            selector = ((held.get("object") or {}).get("spec") or {}).get("selector") or {}
            labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
            return object_evidence(self, kind, name, namespace, labels or None)

        self.wait(
            f"rollout of {_object_name(kind, name, namespace)}",
            probe,
            timeout_s,
            progress,
            evidence,
        )
        return dict(held["object"])

    # -- internals -------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        self._api.update_params_for_auth(headers, [], ["BearerToken"], "", "", None)
        return headers

    def _raw(self, method: str, path: str, query: builtins.list[tuple[str, Any]]) -> str:
        suffix = "&".join(f"{key}={value}" for key, value in query)
        url = self._api.configuration.host + path + (f"?{suffix}" if suffix else "")
        response = self._api.rest_client.request(
            method, url, headers=self._auth_headers(), _request_timeout=self.timeout_s
        )
        data = response.read()
        if not 200 <= response.status <= 299:
            error = ApiException(status=response.status, reason=response.reason)
            error.body = data
            raise error
        return str(data.decode("utf-8", "replace"))


def _state_summary(data: dict[str, Any]) -> str:
    """A short line about an object's status: phase and conditions."""
    status = data.get("status") or {}
    parts = []
    if status.get("phase"):
        parts.append(f"phase {status['phase']}")
    for entry in status.get("conditions") or []:
        parts.append(f"{entry.get('type')}={entry.get('status')}")
    return ", ".join(parts) or "no status yet"
