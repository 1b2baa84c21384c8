"""Grafana dashboards shipped as ConfigMaps (label ``grafana_dashboard: "1"``), checked offline.

Each data entry ending in ``.json`` must be a dashboard: JSON with a ``uid`` unique across
the manifests, a ``title``, and panels whose every query has a PromQL ``expr``. Check 5.1.3
looks the uids up in the lab's Grafana.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labkit.manifests.documents import Document, Problem, default_root, load_documents, problem

__all__ = ["DASHBOARD_LABEL", "check_dashboards", "dashboard_uids", "dashboards"]

DASHBOARD_LABEL = "grafana_dashboard"


def _is_dashboard_map(document: Document) -> bool:
    labels = document.get("metadata.labels") or {}
    return document.kind == "ConfigMap" and str(labels.get(DASHBOARD_LABEL, "")) == "1"


def _entries(document: Document) -> list[tuple[str, str]]:
    data = document.get("data") or {}
    return [(key, str(value)) for key, value in data.items() if str(key).endswith(".json")]


def check_dashboards(documents: list[Document]) -> list[Problem]:
    """Every problem of every dashboard ConfigMap: JSON, uid (unique), title, panel queries."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for document in filter(_is_dashboard_map, documents):
        entries = _entries(document)
        if not entries:
            problems.append(
                problem(document, "data", "a dashboard ConfigMap without a *.json entry")
            )
        for key, text in entries:
            field = f"data.{key}"
            try:
                dashboard = json.loads(text)
            except ValueError as exc:
                problems.append(problem(document, field, f"not JSON: {exc}"))
                continue
            if not isinstance(dashboard, dict):
                problems.append(problem(document, field, "not a JSON object"))
                continue
            uid, title = dashboard.get("uid"), dashboard.get("title")
            if not uid or not title:
                problems.append(problem(document, field, "a dashboard needs a uid and a title"))
            elif uid in seen:
                problems.append(problem(document, f"{field} uid", f"{uid!r} also in {seen[uid]}"))
            else:
                seen[str(uid)] = f"{document.path} {document.name}"
            panels = dashboard.get("panels") or []
            if not panels:
                problems.append(problem(document, f"{field} panels", "no panels"))
            for index, panel in enumerate(panels):
                targets = panel.get("targets") or []
                if not targets or not all(str(t.get("expr", "")).strip() for t in targets):
                    problems.append(
                        problem(document, f"{field} panels.{index}", "a panel query without expr")
                    )
    return problems


def dashboards(root: Path | None = None) -> list[dict[str, Any]]:
    """Every dashboard (decoded JSON) the manifests ship."""
    documents, _ = load_documents((root or default_root()).resolve())
    found = []
    for document in filter(_is_dashboard_map, documents):
        for _, text in _entries(document):
            dashboard = json.loads(text)
            if isinstance(dashboard, dict):
                found.append(dashboard)
    return found


def dashboard_uids(root: Path | None = None) -> list[str]:
    """The uids of the manifests' dashboards, in file order."""
    return [str(dashboard["uid"]) for dashboard in dashboards(root) if dashboard.get("uid")]
