"""Phase 4 and 6.2.5 against the API double and a gateway stand-in: healthy passes, breaks fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labkit.checks import Status, run_checks
from labkit.checks.phases import phase4
from labkit.params import load_lab
from tests.kubeapi import KubeApi, mesh

MESH_ITEMS = [
    "4.1.1", "4.1.2", "4.1.3", "4.1.4", "4.1.5", "4.1.6",
    "4.2.1", "4.2.2", "4.2.3", "4.2.4", "4.2.5", "4.2.6",
    "4.3.1", "4.3.2", "4.3.3", "4.3.4", "4.3.5",
]  # fmt: skip
LOCAL = Path(__file__).resolve().parents[2] / "params" / "local.yaml"
SHLINK_POD = mesh.SHLINK_PODS[0]
GATEWAY_OBJECT = ("networking.istio.io", "gateways", "shlink", "shlink-gateway")
REDIS_POLICY = ("security.istio.io", "authorizationpolicies", "redis", "redis-allow")
Results = dict[tuple[str, str], tuple[Status, str, str]]


@dataclass
class Mesh:
    """The double holding a lab after phase 4, with Shlink and the gateway stand-ins running."""

    api: KubeApi
    gateway: mesh.GatewayStandIn
    directory: Path

    def run(self, ids: list[str], through_url: bool = True) -> Results:
        url = f"http://{self.gateway.address[0]}:{self.gateway.address[1]}" if through_url else ""
        lab = self.api.lab(
            self.directory,
            cluster={"wait_timeout_s": 5},
            istio={"rate_limit": {"requests": 40, "per_seconds": 1}, "gateway_url": url},
            targets={"rate_steps": [40], "step_duration_s": 2, "warmup_s": 0},
        )
        return {
            (r.id, r.subject): (r.status, r.observed, r.evidence) for r in run_checks(lab, ids=ids)
        }

    def probes_left(self) -> list[tuple[str, str, str, str]]:
        return [key for key in self.api.store.objects if key[3].startswith("labkit-probe-")]


@pytest.fixture
def double(tmp_path: Path) -> Iterator[Mesh]:
    with ExitStack() as stack:
        api = stack.enter_context(KubeApi())
        mesh.mesh_lab(api.store)
        gateway = stack.enter_context(mesh.mesh_running(api))
        yield Mesh(api, gateway, tmp_path)


def test_a_healthy_mesh_passes_every_phase_4_item_and_6_2_5(double: Mesh) -> None:
    results = double.run([*MESH_ITEMS, "6.2.5"])
    failed = {key: value[:2] for key, value in results.items() if value[0] is not Status.PASS}
    assert failed == {}
    assert {key[0] for key in results} == {*MESH_ITEMS, "6.2.5"}
    assert double.probes_left() == []  # probe pods, VirtualServices, DestinationRule removed
    limited = results[("4.2.4", "")][1]
    assert "answered 429" in limited and not limited.startswith("no EnvoyFilter")
    hosts = {host for host, _, _ in double.gateway.seen}
    assert any(host.endswith("-fault.labkit.invalid") for host in hosts)  # the second hop ran


def test_the_gateway_is_reached_through_a_port_forward_without_a_url(double: Mesh) -> None:
    results = double.run(["4.2.1", "4.2.3", "4.1.6"], through_url=False)
    for item in ("4.2.1", "4.2.3", "4.1.6"):
        status, observed, evidence = results[(item, "")]
        assert status is Status.PASS, observed
        assert "port-forward" in evidence
    assert any(r.path.endswith("/portforward") for r in double.api.requests("GET"))


def _route_to(store: Any, host: str) -> None:
    mesh.read_route(store, route=[{"destination": {"host": host, "port": {"number": 8080}}}])


def _shlink_not_allowed(store: Any) -> None:
    key = ("security.istio.io", "authorizationpolicies", "redis", "redis-allow")
    sources = store.objects[key]["spec"]["rules"][0]["from"][0]["source"]
    sources["principals"] = ["cluster.local/ns/redis/sa/redis"]


def _remove_vs(store: Any) -> None:
    mesh.remove(store, "networking.istio.io", "virtualservices", "shlink", "shlink")


def _no_timeouts(store: Any) -> None:
    mesh.read_route(store, timeout=None, retries={"attempts": 3, "retryOn": "gateway-error"})


BREAKAGES: list[tuple[str, str, Callable[[Any], None], str]] = [
    ("4.1.1", "", mesh.istiod_not_ready, "not ready: istiod"),
    ("4.1.2", "", mesh.istiod_not_ready, "Deployment istiod:"),
    ("4.1.3", "", mesh.gateway_pods_down, "not Ready"),
    ("4.1.4", "redis", lambda s: mesh.injection_label_removed(s, "redis"), "no injection label"),
    ("4.1.5", "shlink", lambda s: mesh.proxy_missing(s, "shlink", SHLINK_POD), "no istio-proxy"),
    ("4.1.6", "", _remove_vs, "404"),
    ("4.2.1", "", lambda s: mesh.remove(s, *GATEWAY_OBJECT), "absent"),
    ("4.2.2", "", lambda s: _route_to(s, "httpbin.default.svc"), "wrong: ['route shlink-reads"),
    ("4.2.3", "", _remove_vs, "404"),
    ("4.2.4", "", mesh.no_rate_limit, "0 answered 429"),
    ("4.2.5", "", _no_timeouts, "answered 200"),
    ("4.2.6", "", lambda s: mesh.read_route(s, retries={"attempts": 0}), "failed"),
    ("4.3.1", "", mesh.mtls_permissive, "istio-system/default: PERMISSIVE"),
    ("4.3.2", "", mesh.mtls_permissive, "exit 0"),
    ("4.3.3", "", lambda s: mesh.remove(s, *REDIS_POLICY), "reply +PONG"),
    ("4.3.4", "", _shlink_not_allowed, "no reply"),
    ("4.3.5", "", mesh.mtls_permissive, "mesh mTLS PERMISSIVE"),
    ("6.2.5", "", _remove_vs, "cannot judge: istio-overhead-through-gateway: error rate 100.0%"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("item", "subject", "breakage", "seen"), BREAKAGES, ids=[b[0] for b in BREAKAGES]
)
def test_each_breakage_fails_its_item_naming_what_was_seen(
    double: Mesh, item: str, subject: str, breakage: Callable[[Any], None], seen: str
) -> None:
    breakage(double.api.store)
    status, observed, _ = double.run([item])[(item, subject)]
    assert status is Status.FAIL, observed
    assert seen in observed
    assert double.probes_left() == []


def test_a_probe_the_gateway_never_serves_is_removed_and_the_wait_named(
    double: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(phase4, "_CONFIG_WAIT_S", 1.0)
    mesh.remove(double.api.store, *GATEWAY_OBJECT)
    status, observed, _ = double.run(["4.2.5"])[("4.2.5", "")]
    assert status is Status.ERROR
    assert "did not serve probe VirtualService labkit-probe-timeout-" in observed
    assert double.probes_left() == []
    applied = [r for r in double.api.requests("PATCH") if "labkit-probe-timeout" in r.path]
    assert len(applied) == 3  # two VirtualServices and a DestinationRule, server-side applied


def test_on_the_sandbox_every_mesh_item_skips_with_the_reason() -> None:
    results = run_checks(load_lab(LOCAL), ids=[*MESH_ITEMS, "6.2.5"])
    assert {r.status for r in results} == {Status.SKIP}
    assert all("Kubernetes API" in r.observed for r in results)


@pytest.mark.parametrize(
    ("text", "value"), [("5s", 5.0), ("250ms", 0.25), ("1.5s", 1.5), ("1m", 60.0), (None, None)]
)
def test_istio_durations_read_as_seconds(text: str | None, value: float | None) -> None:
    assert phase4.seconds(text) == value


def _no_tools(store: Any, verb: str, data: dict[str, Any]) -> None:
    """Probe pods whose image lacks wget and nc: a missing reply must not pass as a denial."""
    if verb == "create" and data.get("kind") == "Pod":
        key = (data["metadata"]["namespace"], data["metadata"]["name"])
        store.exec_handlers[key] = lambda argv, container: (127, "", f"sh: {argv[0]}: not found\n")


@pytest.mark.parametrize("item", ["4.3.2", "4.3.3"])
def test_a_probe_that_cannot_run_its_tools_fails_rather_than_passing(
    double: Mesh, item: str
) -> None:
    double.api.store.hooks.append(_no_tools)  # after MeshKubelet: replaces its exec handler
    status, observed, _ = double.run([item])[(item, "")]
    assert status is Status.FAIL, observed
    assert "not found" in observed
    assert double.probes_left() == []
