"""Drills on a cluster lab against the API double: the right pod deleted, the node cordoned and
uncordoned, the failover followed, the topology waited back; refused without apply + confirm.

What is modelled: the double's objects and a scripted controller (``Recreate``) that
does what the StatefulSet/Deployment controllers, Patroni and the Sentinels would do
after a delete: recreate the pod (on a schedulable node) a moment later, move the
PGO ``role=master`` label to a replica, and make the Sentinels name another master.
The Sentinels are a small RESP responder behind the double's port-forward (their
failover is what the controller scripts; a real Sentinel cannot be told a pod was
deleted), PostgreSQL's ``pg_stat_replication`` is an exec handler, and the load goes
to a loopback Shlink stand-in (seeding, creates, read-back, redirects, health). What
is real: the official client over HTTP, the deletes, the cordon (server-side apply),
the port-forwards, the load engine's requests and trace.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from labkit.drills import run_drill
from labkit.params import Lab
from tests.kubeapi import KubeApi, Store, fixtures

NODES = fixtures.NODES
PGO_CLUSTER = "postgres-operator.crunchydata.com/cluster"
PGO_ROLE = "postgres-operator.crunchydata.com/role"
DRILLS = {"rate_rps": 40, "duration_s": 3, "warmup_s": 0.5, "fault_at_s": 1, "cut_s": 0.5}


# -- a loopback Shlink stand-in -----------------------------------------------------------------


class _Shlink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    codes: ClassVar[dict[str, str]] = {}
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any] | None = None, **headers: str) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        long_url = str(body.get("longUrl", ""))
        with self.lock:
            found = [code for code, url in self.codes.items() if url == long_url]
            code = found[0] if found and body.get("findIfExists") else f"c{len(self.codes):06d}"
            self.codes[code] = long_url
        self._answer(200, {"shortCode": code, "longUrl": long_url, "shortUrl": f"http://s/{code}"})

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/rest/health":
            self._answer(200, {"status": "pass"})
        elif path.startswith("/rest/v3/short-urls/"):
            code = path.rsplit("/", 1)[-1]
            with self.lock:
                known = code in self.codes
            self._answer(200 if known else 404, {"shortCode": code} if known else {"status": 404})
        else:
            with self.lock:
                url = self.codes.get(path.lstrip("/"))
            self._answer(302 if url else 404, None, Location=url or "")


@pytest.fixture
def shlink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Shlink)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# -- the Sentinels: a RESP responder whose master the scripted failover changes -------------


class _Sentinel(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        reader = self.request.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                return
            count = int(line[1:])
            argv = []
            for _ in range(count):
                size = int(reader.readline()[1:])
                argv.append(reader.read(size + 2)[:-2].decode())
            words = [word.upper() for word in argv[:2]]
            state: dict[str, str] = self.server.state  # type: ignore[attr-defined]
            if words == ["SENTINEL", "GET-MASTER-ADDR-BY-NAME"]:
                host, port = state["master"], "6379"
                reply = f"*2\r\n${len(host)}\r\n{host}\r\n${len(port)}\r\n{port}\r\n"
            elif words == ["SENTINEL", "CKQUORUM"]:
                reply = (
                    "+OK 3 usable Sentinels. Quorum and failover authorization can be reached\r\n"
                )
            elif words[:1] == ["HELLO"]:  # redis-py asks for RESP3, as a Redis 7 Sentinel speaks
                reply = "%2\r\n$5\r\nproto\r\n:3\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n"
            elif words == ["PING"]:
                reply = "+PONG\r\n"
            else:
                reply = "+OK\r\n"
            self.request.sendall(reply.encode())


@pytest.fixture
def sentinel() -> Iterator[tuple[dict[str, str], tuple[str, int]]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Sentinel)
    server.daemon_threads = True
    server.state = {"master": "10.42.0.50"}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.state, server.server_address  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


# -- the lab's data tier in the double, and the controllers that bring it back -----------------


def _pod(name: str, namespace: str, labels: dict[str, str], node: str, ip: str) -> dict[str, Any]:
    return fixtures.pod(name, namespace, "example/image:1", labels, node, ip=ip)


def _redis_pod(index: int) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "redis"}
    return _pod(f"redis-{index}", "redis", labels, NODES[index], f"10.42.{index}.50")


def _pg_pod(index: int, role: str) -> dict[str, Any]:
    labels = {PGO_CLUSTER: "shlink-db", PGO_ROLE: role}
    name = f"shlink-db-instance1-{'abc'[index]}x7k-0"
    return _pod(name, "postgres", labels, NODES[index], f"10.42.{index}.60")


def data_tier(store: Store) -> None:
    for name in ("redis", "postgres", "shlink"):
        store.put(fixtures.namespace(name))
    for index in range(3):
        store.put(_redis_pod(index))
    store.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "redis-sentinel", "namespace": "redis"},
            "spec": {
                "selector": {"app.kubernetes.io/name": "redis"},
                "ports": [{"name": "tcp-sentinel", "port": 26379, "targetPort": 26379}],
            },
        }
    )
    for index in range(2):
        store.put(_pg_pod(index, "master" if index == 0 else "replica"))
    for index in range(2):
        labels = {"app.kubernetes.io/name": "shlink"}
        store.put(
            _pod(
                f"shlink-6d9f8-{index}abcd",
                "shlink",
                labels,
                NODES[index + 1],
                f"10.42.{index + 1}.70",
            )
        )
    store.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "shlink", "namespace": "shlink"},
            "spec": {
                "selector": {"app.kubernetes.io/name": "shlink"},
                "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
            },
        }
    )


class Recreate:
    """After a pod delete: its controller's replacement (0.4 s later, on a schedulable node),
    Patroni's promotion (the master label moves), the Sentinels' new master."""

    def __init__(self, sentinel_state: dict[str, str]) -> None:
        self.sentinel = sentinel_state
        self.deleted: list[str] = []
        self.serial = 0
        self.leader = "master"  # the role label Patroni gives its leader ("primary" when newer)

    def _node(self, store: Store, wanted: str) -> str:
        nodes = [
            data
            for (group, plural, _, _), data in list(store.objects.items())
            if group == "" and plural == "nodes"
        ]
        free = [
            n["metadata"]["name"] for n in nodes if not (n.get("spec") or {}).get("unschedulable")
        ]
        return wanted if wanted in free else sorted(free)[0]

    def __call__(self, store: Store, verb: str, data: dict[str, Any]) -> None:
        if verb != "delete" or data.get("kind") != "Pod":
            return
        meta = data["metadata"]
        namespace, name, labels = meta["namespace"], meta["name"], dict(meta.get("labels") or {})
        self.deleted.append(f"{namespace}/{name}")
        if namespace == "redis" and data["status"]["podIP"] == self.sentinel["master"]:
            others = [
                f"10.42.{i}.50" for i in range(3) if f"10.42.{i}.50" != self.sentinel["master"]
            ]
            self.sentinel["master"] = others[0]
        if namespace == "postgres" and labels.get(PGO_ROLE) == self.leader:
            for key, pod in list(store.objects.items()):
                pod_labels = pod["metadata"].get("labels") or {}
                if key[2] == "postgres" and pod_labels.get(PGO_ROLE) == "replica":
                    promoted = json.loads(json.dumps(pod))
                    promoted["metadata"]["labels"][PGO_ROLE] = self.leader
                    store.put(promoted)
                    break
            labels[PGO_ROLE] = "replica"
        self.serial += 1
        if namespace == "shlink":
            name = f"shlink-6d9f8-r{self.serial}xyz"
        node = self._node(store, data["spec"].get("nodeName", ""))
        replacement = _pod(name, namespace, labels, node, data["status"]["podIP"])
        timer = threading.Timer(0.4, store.put, args=(replacement,))
        timer.daemon = True
        timer.start()


@pytest.fixture
def drill_api(
    api: KubeApi, sentinel: tuple[dict[str, str], tuple[str, int]]
) -> tuple[KubeApi, Recreate]:
    state, address = sentinel
    data_tier(api.store)
    for index in range(3):
        api.wire.backends[("redis", f"redis-{index}", "26379")] = address
    controller = Recreate(state)
    api.store.hooks.append(controller)

    def replication(argv: list[str], container: str | None) -> tuple[int, str, str]:
        assert container == "database" and "pg_stat_replication" in argv[-1]
        return 0, "1\n", ""

    for index in range(2):
        api.store.exec_handlers[("postgres", _pg_pod(index, "x")["metadata"]["name"])] = replication
    return api, controller


def _lab(api: KubeApi, tmp_path: Path, **sections: Any) -> Lab:
    result: Lab = api.lab(tmp_path / "lab", drills=DRILLS, **sections)
    return result


def _deleted(api: KubeApi) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in api.requests("DELETE") if "/pods/" in r.path]


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apply", "confirm"), [(False, "double-lab"), (True, ""), (True, "homelab")]
)
def test_a_cluster_drill_is_refused_without_apply_and_the_lab_typed(
    drill_api: tuple[KubeApi, Recreate], tmp_path: Path, shlink: str, apply: bool, confirm: str
) -> None:
    api, _ = drill_api
    outcome = run_drill(
        _lab(api, tmp_path), "redis-master", apply=apply, confirm=confirm,
        progress=lambda _: None, target_url=shlink,
    )  # fmt: skip
    assert outcome.status == "skip" and outcome.reason.startswith("refused")
    assert "--confirm double-lab" in outcome.reason
    assert api.requests("DELETE") == [] and api.requests("PATCH") == []


def test_redis_master_drill_deletes_the_pod_the_sentinels_name_and_waits_for_quorum(
    drill_api: tuple[KubeApi, Recreate], tmp_path: Path, shlink: str
) -> None:
    api, _ = drill_api
    outcome = run_drill(
        _lab(api, tmp_path), "redis-master", apply=True, confirm="double-lab",
        progress=lambda _: None, target_url=shlink, settle_s=10,
    )  # fmt: skip
    assert outcome.status == "done", outcome.reason
    assert _deleted(api) == ["redis-0"]  # 10.42.0.50 is redis-0's podIP
    assert outcome.failover["old_master"] == "10.42.0.50"
    assert outcome.failover["new_master"] == "10.42.1.50"
    assert outcome.failover["promoted_s"] is not None
    assert any(a.startswith("Sentinel quorum: OK") for a in outcome.restored["actions"])
    assert outcome.restored["ok"] and outcome.measured["requests"] > 50
    assert outcome.writes["lost"] == 0 and outcome.load["target"] == shlink


def test_postgres_primary_drill_deletes_the_master_pod_and_sees_the_label_move(
    drill_api: tuple[KubeApi, Recreate], tmp_path: Path, shlink: str
) -> None:
    api, _ = drill_api
    outcome = run_drill(
        _lab(api, tmp_path), "postgres-primary", apply=True, confirm="double-lab",
        progress=lambda _: None, target_url=shlink, settle_s=10,
    )  # fmt: skip
    assert outcome.status == "done", outcome.reason
    assert _deleted(api) == ["shlink-db-instance1-ax7k-0"]
    assert outcome.failover["new_master"] == "shlink-db-instance1-bx7k-0"
    assert any("1 streaming replica" in a for a in outcome.restored["actions"])
    assert outcome.ok or outcome.restored["ok"]


def test_postgres_primary_drill_follows_a_leader_labelled_primary(
    drill_api: tuple[KubeApi, Recreate], tmp_path: Path, shlink: str
) -> None:
    api, controller = drill_api
    controller.leader = "primary"
    for key, pod in list(api.store.objects.items()):
        labels = pod["metadata"].get("labels") or {}
        if key[2] == "postgres" and labels.get(PGO_ROLE) == "master":
            relabelled = json.loads(json.dumps(pod))
            relabelled["metadata"]["labels"][PGO_ROLE] = "primary"
            api.store.put(relabelled)
    outcome = run_drill(
        _lab(api, tmp_path), "postgres-primary", apply=True, confirm="double-lab",
        progress=lambda _: None, target_url=shlink, settle_s=10,
    )  # fmt: skip
    assert outcome.status == "done", outcome.reason
    assert _deleted(api) == ["shlink-db-instance1-ax7k-0"]
    assert outcome.failover["new_master"] == "shlink-db-instance1-bx7k-0"


def test_a_postgres_drill_without_a_replica_stops_before_any_delete(
    drill_api: tuple[KubeApi, Recreate], tmp_path: Path, shlink: str
) -> None:
    api, _ = drill_api
    del api.store.objects[("", "pods", "postgres", "shlink-db-instance1-bx7k-0")]
    with pytest.raises(Exception, match="no replica, deleting the master is an outage"):
        run_drill(
            _lab(api, tmp_path), "postgres-primary", apply=True, confirm="double-lab",
            progress=lambda _: None, target_url=shlink, settle_s=5,
        )  # fmt: skip
    assert _deleted(api) == []


def test_shlink_pod_drill_deletes_one_ready_pod_and_waits_for_its_replacement(
    drill_api: tuple[KubeApi, Recreate], tmp_path: Path, shlink: str
) -> None:
    api, _ = drill_api
    outcome = run_drill(
        _lab(api, tmp_path), "shortener-worker", apply=True, confirm="double-lab",
        progress=lambda _: None, target_url=shlink, settle_s=10,
    )  # fmt: skip
    assert outcome.status == "done", outcome.reason
    assert _deleted(api) == ["shlink-6d9f8-0abcd"]
    assert outcome.failover["replaced_s"] is not None
    assert outcome.restored["ok"]


def test_node_cut_cordons_deletes_its_pods_and_uncordons(
    drill_api: tuple[KubeApi, Recreate], tmp_path: Path, shlink: str
) -> None:
    api, _ = drill_api
    outcome = run_drill(
        _lab(api, tmp_path), "node-cut", apply=True, confirm="double-lab",
        progress=lambda _: None, target_url=shlink, settle_s=10,
    )  # fmt: skip
    assert outcome.status == "done", outcome.reason
    node = NODES[2]  # the last node running a Shlink pod
    patches = [r for r in api.requests("PATCH") if r.path.endswith(f"/nodes/{node}")]
    bodies = [json.loads(r.body) if isinstance(r.body, (bytes, str)) else r.body for r in patches]
    assert [b["spec"]["unschedulable"] for b in bodies] == [True, False]
    assert sorted(_deleted(api)) == ["redis-2", "shlink-6d9f8-1abcd"]
    assert not (api.store.objects[("", "nodes", "", node)].get("spec") or {}).get("unschedulable")
    assert outcome.restored["ok"] and f"{node} schedulable again" in outcome.restored["actions"]


def test_the_load_goes_through_a_port_forward_when_the_base_url_does_not_answer(
    drill_api: tuple[KubeApi, Recreate], tmp_path: Path, shlink: str
) -> None:
    api, _ = drill_api
    host, port = shlink.removeprefix("http://").split(":")
    for index in range(2):
        api.wire.backends[("shlink", f"shlink-6d9f8-{index}abcd", "8080")] = (host, int(port))
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    lab = _lab(api, tmp_path, shlink={"base_url": f"http://127.0.0.1:{dead}"})
    outcome = run_drill(
        lab, "redis-master", apply=True, confirm="double-lab",
        progress=lambda _: None, settle_s=10,
    )  # fmt: skip
    assert outcome.status == "done", outcome.reason
    assert outcome.load["target"] != f"http://127.0.0.1:{dead}"
    assert outcome.measured["requests"] > 50 and outcome.measured["failed"] == 0


def test_labkit_drill_on_a_cluster_lab_without_confirm_exits_2_and_deletes_nothing(
    drill_api: tuple[KubeApi, Recreate], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from labkit.cli import main

    api, _ = drill_api
    params = api.params(tmp_path / "lab", drills=DRILLS)
    code = main(["drill", "--params", str(params), "--scenario", "node-cut", "--apply"])
    assert code == 2 and "refused" in capsys.readouterr().out
    assert api.requests("DELETE") == [] and api.requests("PATCH") == []
