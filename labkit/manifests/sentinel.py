"""Redis Sentinel's identity and memory: a stable ``sentinel myid`` and a config that persists.

Sentinel rewrites its config file with its ID, its peers and the current master at every
change. Written afresh at each pod start from a template without ``sentinel myid``, the
Sentinel gets a new ID every time (its peers keep the old one as a ghost whenever the
announced address changes, and before redis PR #9240 (2021) even when it does not, raising
the majority a failover needs); kept on a volume that dies with the pod, the last master is lost,
so a cold restart, with no Sentinel left to ask, falls back to a fixed pod as master.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from labkit.manifests.documents import Document, Problem, problem

__all__ = ["check_sentinels"]

_LITERAL_ID = re.compile(r"^[0-9a-f]{40}$")


def check_sentinels(documents: list[Document], kustomizations: dict[Path, str]) -> list[Problem]:
    """Sentinel containers whose ID changes at each start, or whose config dies with the pod."""

    def namespace(document: Document) -> str:
        return kustomizations.get(document.path.parent, "") or document.namespace

    problems: list[Problem] = []
    for statefulset in (d for d in documents if d.kind == "StatefulSet"):
        pod = statefulset.get("spec.template.spec") or {}
        for index, container in enumerate(pod.get("containers") or []):
            command = [str(word) for word in (container or {}).get("command") or []]
            if len(command) < 2 or command[0] != "redis-sentinel":
                continue
            templates = [
                d
                for d in documents
                if d.kind == "ConfigMap"
                and namespace(d) == namespace(statefulset)
                and "sentinel.conf" in (d.get("data") or {})
            ]
            field = f"spec.template.spec.containers.{index}.command"
            problems += _check(statefulset, field, command[1], container, pod, templates)
    return problems


def _check(
    statefulset: Document,
    field: str,
    path: str,
    container: dict[str, Any],
    pod: dict[str, Any],
    templates: list[Document],
) -> list[Problem]:
    problems: list[Problem] = []
    volume = _volume_of(path, container)
    claims = {
        str((claim.get("metadata") or {}).get("name"))
        for claim in statefulset.get("spec.volumeClaimTemplates") or []
        if isinstance(claim, dict)
    }
    persistent = volume in claims or any(
        v.get("name") == volume and "persistentVolumeClaim" in v for v in pod.get("volumes") or []
    )
    written_at_start = any(
        _volume_of(path, init) == volume for init in pod.get("initContainers") or []
    )
    if not persistent:
        problems.append(
            problem(
                statefulset,
                field,
                f"Sentinel's config {path} is on volume {volume or '(none: the image)'}, which "
                "dies with the pod: the master Sentinel last agreed on is lost, so a cold "
                "restart, with no Sentinel left to ask, picks a fixed pod as master; keep the "
                f"file on a volumeClaimTemplate ({', '.join(sorted(claims)) or 'add one'})",
            )
        )
    for number, init in enumerate(pod.get("initContainers") or []):
        for variable in init.get("env") or []:
            if variable.get("name") == "REDIS_PODS" and str(variable.get("value")) != str(
                statefulset.get("spec.replicas")
            ):
                problems.append(
                    problem(
                        statefulset,
                        f"spec.template.spec.initContainers.{number}.env REDIS_PODS",
                        f"{variable.get('value')!r} but spec.replicas is "
                        f"{statefulset.get('spec.replicas')!r}: init.sh would ask the wrong "
                        "pods who the master is; make them equal",
                    )
                )
    for template in templates:
        ids = [
            line.split()[2]
            for line in str(template.get("data")["sentinel.conf"]).splitlines()
            if len(line.split()) >= 3 and line.split()[:2] == ["sentinel", "myid"]
        ]
        if not ids and (written_at_start or not persistent):
            problems.append(
                problem(
                    template,
                    "data.sentinel.conf",
                    f"no 'sentinel myid', and {path} (StatefulSet {statefulset.name}) is "
                    "written afresh at every pod start: each start is a new Sentinel to its "
                    "peers, which keep the old one as a ghost when its address changes and "
                    "then need a larger majority to fail over; add 'sentinel myid <ID>' with "
                    "the ID derived from the pod name by the init script",
                )
            )
        replicas = statefulset.get("spec.replicas")
        if any(_LITERAL_ID.match(i) for i in ids) and (replicas is None or replicas > 1):
            problems.append(
                problem(
                    template,
                    "data.sentinel.conf",
                    f"'sentinel myid {ids[0]}' is one literal ID for every pod of StatefulSet "
                    f"{statefulset.name}: the Sentinels would take each other for themselves; "
                    "template it and derive it from the pod name",
                )
            )
    return problems


def _volume_of(path: str, container: dict[str, Any]) -> str:
    """The volume mounted deepest above ``path`` in ``container`` ('' when none)."""
    best, name = -1, ""
    for mount in container.get("volumeMounts") or []:
        where = str(mount.get("mountPath", "")).rstrip("/")
        if (path == where or path.startswith(f"{where}/")) and len(where) > best:
            best, name = len(where), str(mount.get("name", ""))
    return name
