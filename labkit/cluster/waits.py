"""Waits with a deadline, progress and evidence: a predicate, a condition, a rollout.

A wait polls (no watches: a poll survives an API server restart and has an
obvious deadline). On timeout, WaitTimeout names what was awaited, the last
state seen, the object's recent Events and the last log lines of its failing
containers, so the message alone says where to look.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any, Protocol

from labkit.errors import LabkitError, WaitTimeout
from labkit.secrets import redact


class _Reader(Protocol):
    """What evidence needs of a Cluster (labkit.cluster.client.Cluster has it)."""

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None."""

    def list(
        self, kind: str, namespace: str | None = None, labels: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Objects of a kind."""

    def events(
        self, namespace: str, name: str | None = None, kind: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Events about an object."""

    def logs(
        self, pod: str, namespace: str, container: str | None = None, tail_lines: int = 50
    ) -> str:
        """A container's last log lines."""


__all__ = [
    "Progress",
    "Verdict",
    "condition_status",
    "failing_containers",
    "object_evidence",
    "pod_ready",
    "rollout_status",
    "wait_until",
]

Progress = Callable[[str], None]
# What a probe returns: (done, what it saw). ``what it saw`` becomes progress and evidence.
Verdict = tuple[bool, str]


def _quiet(_: str) -> None:
    return


def wait_until(
    what: str,
    probe: Callable[[], Verdict],
    timeout_s: float,
    interval_s: float = 1.0,
    progress: Progress | None = None,
    evidence: Callable[[], str] | None = None,
) -> str:
    """Poll ``probe`` until it says done; returns what it saw last. WaitTimeout at the deadline.

    A LabkitError from the probe (the API briefly unreachable) counts as "not yet" and
    is shown as the last state; ``evidence`` is called once, on timeout.
    """
    report = progress or _quiet
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    last = "nothing seen yet"
    shown = ""
    while True:
        try:
            done, last = probe()
        except LabkitError as exc:
            done, last = False, f"error: {exc}"
        if last != shown:
            report(redact(f"{what}: {last} ({time.monotonic() - started:.0f}s)"))
            shown = last
        if done:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(interval_s, deadline - time.monotonic())))
    detail = ""
    if evidence is not None:
        try:
            detail = evidence()
        except LabkitError as exc:
            detail = f"(evidence unavailable: {exc})"
    message = f"waited {timeout_s:.0f}s for {what}; last seen: {last}"
    if detail:
        message += f"\n{detail}"
    raise WaitTimeout(redact(message))


def condition_status(data: dict[str, Any] | None, condition: str) -> str:
    """The status ("True", "False", "Unknown") of ``condition`` in ``status.conditions``, or ""."""
    for entry in ((data or {}).get("status") or {}).get("conditions") or []:
        if entry.get("type") == condition:
            return str(entry.get("status", ""))
    return ""


def pod_ready(pod: dict[str, Any]) -> bool:
    """A pod is Running and its Ready condition is True."""
    return (pod.get("status") or {}).get("phase") == "Running" and condition_status(
        pod, "Ready"
    ) == "True"


def failing_containers(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """(container, why) for every container not ready: waiting reason or termination."""
    failing = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("ready"):
            continue
        state = status.get("state") or {}
        why = "not ready"
        if "waiting" in state:
            waiting = state["waiting"] or {}
            why = f"waiting: {waiting.get('reason', '?')} {waiting.get('message', '')}".strip()
        elif "terminated" in state:
            ended = state["terminated"] or {}
            why = f"terminated: {ended.get('reason', '?')} (exit {ended.get('exitCode', '?')})"
        restarts = status.get("restartCount", 0)
        if restarts:
            why += f", {restarts} restarts"
        failing.append((str(status.get("name", "?")), why))
    return failing


def rollout_status(data: dict[str, Any] | None) -> Verdict:
    """Whether a Deployment, StatefulSet or DaemonSet has rolled out, and what it shows."""
    if data is None:
        return False, "absent"
    kind = data.get("kind", "")
    spec = data.get("spec") or {}
    status = data.get("status") or {}
    generation = (data.get("metadata") or {}).get("generation", 0)
    observed = status.get("observedGeneration", 0)
    if kind == "DaemonSet":
        wanted = int(status.get("desiredNumberScheduled", 0))
        ready = int(status.get("numberReady", 0))
        updated = int(status.get("updatedNumberScheduled", 0))
    else:
        wanted = int(spec.get("replicas", 1))
        ready = int(status.get("readyReplicas", 0))
        updated = int(status.get("updatedReplicas", 0))
    seen = f"{ready}/{wanted} ready, {updated} updated, generation {observed}/{generation}"
    done = observed >= generation and ready >= wanted and updated >= wanted
    return done, seen


def object_evidence(
    cluster: _Reader, kind: str, name: str, namespace: str | None, selector: str | None = None
) -> str:
    """Recent Events of the object (and its pods), and failing containers' last log lines."""
    lines: list[str] = []
    if namespace:
        events = cluster.events(namespace, name)[-5:]
        pods = cluster.list("Pod", namespace, labels=selector) if selector else []
        if kind == "Pod":
            found = cluster.get("Pod", name, namespace)
            pods = [found] if found else []
        for pod in pods:
            events += cluster.events(namespace, pod["metadata"]["name"], "Pod")[-3:]
        for event in events:
            lines.append(
                f"event {event.get('type', '')} {event.get('reason', '')} "
                f"{event.get('involvedObject', {}).get('name', '')}: {event.get('message', '')}"
            )
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            for container, why in failing_containers(pod):
                tail = cluster.logs(pod_name, namespace, container, tail_lines=5).strip()
                lines.append(f"pod {pod_name} container {container} {why}")
                lines += [f"  | {line}" for line in tail.splitlines()[-5:]]
    return "\n".join(lines) if lines else "no events or failing containers found"
