"""The double's HTTP side: the API server's paths, verbs, content types and Status errors.

Served on 127.0.0.1 (or another loopback address) on a port the kernel picks,
by a threading HTTP/1.1 server. It answers discovery (``/version``, ``/api``,
``/api/v1``, ``/apis``, ``/apis/<group>/<version>``), get and list (label and
field selectors), create (POST), server-side apply (PATCH with
``application/apply-patch+yaml``, ``fieldManager``, ``force``, ``dryRun=All``),
status merge patches, delete, ``pods/log`` and the service proxy (relayed to a
loopback backend a test registers). Every request is recorded for assertions.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import struct
import threading
import traceback
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tests.kubeapi.store import ApiFailure, Resource, Store

GIT_VERSION = "v1.31.12+k3s1"


@dataclass(frozen=True)
class Request:
    """One request the double saw."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes
    authorization: str


@dataclass
class Wire:
    """What crossed the wire, and the loopback backends services proxy to."""

    requests: list[Request] = field(default_factory=list)
    backends: dict[tuple[str, str, str], tuple[str, int]] = field(default_factory=dict)
    token: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


_SET_TERM = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _terms(selector: str) -> list[str]:
    """Split a selector on commas outside parentheses (``a in (x,y),b=c``)."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    return [term for term in terms if term]


def _matches_labels(data: dict[str, Any], selector: str) -> bool:
    labels = data.get("metadata", {}).get("labels") or {}
    for term in _terms(selector):
        found = _SET_TERM.match(term)
        if found:
            key, operator, values = found.groups()
            wanted = {value.strip() for value in values.split(",")}
            if (labels.get(key) in wanted) != (operator == "in"):
                return False
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _matches_fields(data: dict[str, Any], selector: str) -> bool:
    for term in filter(None, (part.strip() for part in selector.split(","))):
        key, _, value = term.replace("==", "=").partition("=")
        current: Any = data
        for part in key.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if str(current if current is not None else "") != value:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # one write per response: no Nagle/delayed-ACK stall per request
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- plumbing --------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        body = self._body()
        wire = self.server.wire
        with wire.lock:
            wire.requests.append(
                Request(
                    self.command,
                    parts.path,
                    query,
                    self.headers.get("Content-Type", ""),
                    body,
                    self.headers.get("Authorization", ""),
                )
            )
        if wire.token and self.headers.get("Authorization") != f"Bearer {wire.token}":
            self._send(401, ApiFailure(401, "Unauthorized", "Unauthorized").status())
            return
        try:
            self._route(parts.path, query, body)
        except ApiFailure as failure:
            self._send(failure.code, failure.status())
        except Exception as exc:  # a bug in the double answers 500, visibly, never hangs
            traceback.print_exc()
            self._send(500, ApiFailure(500, "InternalError", repr(exc)).status())

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle  # noqa: N815

    # -- routes ----------------------------------------------------------------------------

    def _route(self, path: str, query: dict[str, str], body: bytes) -> None:
        store = self.server.store
        segments = [unquote(s) for s in path.strip("/").split("/") if s]
        if segments == ["version"]:
            minor = GIT_VERSION.split(".")[1]
            self._send(200, {"major": "1", "minor": minor, "gitVersion": GIT_VERSION})
            return
        if segments == ["api"]:
            self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
            return
        if segments == ["apis"]:
            self._send(200, self._groups(store))
            return
        if segments[:1] == ["api"] and len(segments) == 2:
            self._send(200, self._resource_list(store, "", segments[1]))
            return
        if segments[:1] == ["apis"] and len(segments) == 3:
            self._send(200, self._resource_list(store, segments[1], segments[2]))
            return
        if segments[:1] == ["api"]:
            group, version, rest = "", segments[1], segments[2:]
        elif segments[:1] == ["apis"] and len(segments) > 3:
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise ApiFailure(404, "NotFound", f"the server could not find {path}")
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        elif len(rest) == 2 and rest[0] == "namespaces" and group == "":
            rest = ["namespaces", rest[1]]
        resource = store.resource(group, version, rest[0])
        if resource.namespaced != bool(namespace) and len(rest) > 1:
            raise ApiFailure(404, "NotFound", f"the server could not find {path}")
        self._object(resource, namespace, rest[1:], query, body)

    @staticmethod
    def _groups(store: Store) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for resource in store.resources:
            if resource.group:
                versions = groups.setdefault(resource.group, [])
                if resource.version not in versions:
                    versions.append(resource.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": name,
                    "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                    "preferredVersion": {
                        "groupVersion": f"{name}/{versions[0]}",
                        "version": versions[0],
                    },
                }
                for name, versions in groups.items()
            ],
        }

    @staticmethod
    def _resource_list(store: Store, group: str, version: str) -> dict[str, Any]:
        found = [r for r in store.resources if (r.group, r.version) == (group, version)]
        if not found:
            raise ApiFailure(404, "NotFound", f"the server could not find {group}/{version}")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": found[0].api_version,
            "resources": [entry for r in found for entry in r.discovery()],
        }

    def _object(
        self,
        resource: Resource,
        namespace: str,
        rest: list[str],
        query: dict[str, str],
        body: bytes,
    ) -> None:
        store = self.server.store
        method = self.command
        if not rest:
            if method == "GET":
                items = [
                    item
                    for item in store.list(resource, namespace)
                    if _matches_labels(item, query.get("labelSelector", ""))
                    and _matches_fields(item, query.get("fieldSelector", ""))
                ]
                self._send(
                    200,
                    {
                        "kind": f"{resource.kind}List",
                        "apiVersion": resource.api_version,
                        "metadata": {"resourceVersion": "1"},
                        "items": items,
                    },
                )
                return
            if method == "POST":
                created = store.create(resource, namespace, json.loads(body or b"{}"))
                self._send(201, created)
                return
            raise ApiFailure(405, "MethodNotAllowed", f"{method} on a collection")
        name, sub = rest[0], rest[1:]
        if sub and sub[0] == "log":
            store.get(resource, namespace, name)
            container = query.get("container", "")
            text = store.logs.get((namespace, name, container), "")
            if not text and not container:
                matches = [
                    v for (ns, n, _), v in store.logs.items() if (ns, n) == (namespace, name)
                ]
                text = matches[0] if matches else ""
            lines = text.splitlines(keepends=True)
            if "tailLines" in query:
                lines = lines[-int(query["tailLines"]) :]
            self._send(200, "".join(lines).encode(), "text/plain")
            return
        if sub == ["exec"]:
            store.get(resource, namespace, name)
            self._exec(namespace, name)
            return
        if sub == ["portforward"]:
            store.get(resource, namespace, name)
            self._portforward(namespace, name, query)
            return
        if sub and sub[0] == "proxy":
            self._proxy(namespace, name, "/" + "/".join(sub[1:]), query, body)
            return
        if method == "GET":
            self._send(200, store.get(resource, namespace, name))
        elif method == "DELETE":
            gone = store.delete(resource, namespace, name)
            self._send(200, gone)
        elif method == "PATCH" and sub == ["status"]:
            patch = json.loads(body or b"{}")
            current = store.get(resource, namespace, name)
            status = {**(current.get("status") or {}), **(patch.get("status") or {})}
            store.update_status(resource.api_version, resource.kind, namespace, name, status)
            self._send(200, store.get(resource, namespace, name))
        elif method == "PATCH":
            content_type = self.headers.get("Content-Type", "").split(";")[0]
            if content_type != "application/apply-patch+yaml":
                raise ApiFailure(
                    415, "UnsupportedMediaType", f"the double only applies ({content_type})"
                )
            config = yaml.safe_load(body.decode() or "{}") or {}
            if config.get("apiVersion") != resource.api_version or config.get("kind") != (
                resource.kind
            ):
                raise ApiFailure(400, "BadRequest", "apiVersion and kind must match the URL")
            result, created = store.apply(
                resource,
                namespace,
                name,
                config,
                query.get("fieldManager", ""),
                query.get("force", "false") == "true",
                query.get("dryRun", "") == "All",
            )
            self._send(201 if created else 200, result)
        else:
            raise ApiFailure(405, "MethodNotAllowed", f"{method} {resource.plural}/{name}")

    # -- port-forward: the websocket v4.channel.k8s.io protocol ------------------------------

    def _frame(self, payload: bytes, opcode: int = 0x2) -> None:
        header = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            header += bytes([size])
        elif size < 1 << 16:
            header += bytes([126]) + struct.pack("!H", size)
        else:
            header += bytes([127]) + struct.pack("!Q", size)
        with self._send_lock:
            self.connection.sendall(header + payload)

    def _read_frame(self) -> tuple[int, bytes] | None:
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        opcode, size = head[0] & 0x0F, head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", self.rfile.read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = self.rfile.read(size)
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def _upgrade(self) -> None:
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if "v4.channel.k8s.io" not in offered:
            raise ApiFailure(400, "BadRequest", "the double speaks v4.channel.k8s.io only")
        digest = hashlib.sha1(
            self.headers["Sec-WebSocket-Key"].encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        ).digest()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", base64.b64encode(digest).decode())
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self._send_lock = threading.Lock()

    def _exec(self, namespace: str, pod: str) -> None:
        query = parse_qs(urlsplit(self.path).query)
        argv = query.get("command", [])
        container = (query.get("container") or [""])[0]
        self._upgrade()
        handler = self.server.store.exec_handlers.get((namespace, pod))
        if handler is None:
            code, out, err = 126, "", f"OCI runtime exec failed: {argv[:1]} not found\n"
        else:
            code, out, err = handler(argv, container)
        if out:
            self._frame(b"\x01" + out.encode())
        if err:
            self._frame(b"\x02" + err.encode())
        status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        if code:
            status = {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        self._frame(b"\x03" + json.dumps(status).encode())
        self._frame(b"", 0x8)

    def _portforward(self, namespace: str, pod: str, query: dict[str, str]) -> None:
        if "ports" not in query:
            raise ApiFailure(400, "BadRequest", "port-forward needs ports")
        port = int(query["ports"])
        self._upgrade()
        number = struct.pack("<H", port)
        self._frame(b"\x00" + number)
        self._frame(b"\x01" + number)
        target = self.server.wire.backends.get((namespace, pod, str(port)))
        try:
            backend = socket.create_connection(target, timeout=5) if target else None
        except OSError as exc:
            backend, refused = None, str(exc)
        else:
            refused = "connection refused"
        if backend is None:
            self._frame(b"\x01" + f"error forwarding port {port} to pod {pod}: {refused}".encode())
            self._frame(b"", 0x8)
            return

        def upstream() -> None:  # backend -> client
            try:
                while chunk := backend.recv(65536):
                    self._frame(b"\x00" + chunk)
            except OSError:
                pass
            with suppress(OSError):
                self._frame(b"", 0x8)

        pump = threading.Thread(target=upstream, daemon=True)
        pump.start()
        try:
            while (frame := self._read_frame()) is not None:
                opcode, data = frame
                if opcode == 0x8:
                    break
                if opcode == 0x2 and data[:1] == b"\x00" and len(data) > 1:
                    backend.sendall(data[1:])
        except OSError:
            pass
        finally:
            with suppress(OSError):
                backend.shutdown(socket.SHUT_RDWR)
            backend.close()
            pump.join(timeout=5)

    def _proxy(
        self, namespace: str, service: str, path: str, query: dict[str, str], body: bytes
    ) -> None:
        scheme_name_port = service.split(":")
        name = scheme_name_port[-2] if len(scheme_name_port) > 1 else service
        port = scheme_name_port[-1] if len(scheme_name_port) > 1 else ""
        target = self.server.wire.backends.get((namespace, name, port))
        if target is None:
            raise ApiFailure(
                503,
                "ServiceUnavailable",
                f'no endpoints available for service "{name}:{port}" in {namespace}',
            )
        connection = http.client.HTTPConnection(*target, timeout=10)
        try:
            suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
            headers = {
                key: value
                for key, value in self.headers.items()
                if key.lower() in {"content-type", "accept", "x-api-key"}
            }
            try:
                connection.request(self.command, path + suffix, body=body or None, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
            except OSError as exc:
                raise ApiFailure(
                    503,
                    "ServiceUnavailable",
                    f"error trying to reach service: dial tcp {target[0]}:{target[1]}: {exc}",
                ) from None
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: Store, wire: Wire) -> None:
        super().__init__(address, _Handler)
        self.store = store
        self.wire = wire
