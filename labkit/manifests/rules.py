"""Alert rules: the PrometheusRule groups of ``manifests/monitoring/`` as a plain rule file.

The cluster's Prometheus Operator loads the PrometheusRule's ``spec.groups``; the sandbox's
Prometheus and ``promtool`` load a rule file of the same groups. One extraction serves both,
so the rules tested and the rules the sandbox evaluates are the ones the cluster runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from labkit.errors import ConfigError

__all__ = ["alert_names", "monitoring_dir", "rule_file_text", "rule_groups", "write_rule_file"]


def monitoring_dir(root: Path | None = None) -> Path:
    """The ``monitoring`` folder of the manifests tree (default: this repository's)."""
    from labkit.manifests import default_root  # noqa: PLC0415 - the package imports this module

    return (root or default_root()) / "monitoring"


def rule_groups(root: Path | None = None) -> list[dict[str, Any]]:
    """Every rule group of every PrometheusRule under ``manifests/monitoring/``, in file order."""
    folder = monitoring_dir(root)
    groups: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc}); fix the manifest") from None
        for document in documents:
            if isinstance(document, dict) and document.get("kind") == "PrometheusRule":
                found = (document.get("spec") or {}).get("groups") or []
                if not isinstance(found, list):
                    raise ConfigError(f"{path}: spec.groups of a PrometheusRule is not a list")
                groups += found
    if not groups:
        raise ConfigError(
            f"{folder}: no PrometheusRule with rule groups; the alert rules live there"
        )
    return groups


def alert_names(root: Path | None = None) -> list[str]:
    """The name of every alerting rule in the manifests, in order."""
    return [
        str(rule["alert"])
        for group in rule_groups(root)
        for rule in group.get("rules", [])
        if isinstance(rule, dict) and "alert" in rule
    ]


def rule_file_text(root: Path | None = None) -> str:
    """The manifests' rule groups as the text of a Prometheus rule file."""
    return "# Extracted by labkit from manifests/monitoring (PrometheusRule spec.groups).\n" + (
        yaml.safe_dump({"groups": rule_groups(root)}, sort_keys=False)
    )


def write_rule_file(path: Path, root: Path | None = None) -> Path:
    """Write the manifests' rule groups as a Prometheus rule file at ``path``; returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rule_file_text(root))
    return path
