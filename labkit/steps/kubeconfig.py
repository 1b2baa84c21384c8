"""The kubeconfig step: fetch K3s's kubeconfig from the first server, rewrite it, save it (0600).

The rewrite parses the YAML and sets the server address and names; it never
replaces strings, so a certificate that happens to contain "default" survives.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labkit import facts
from labkit.errors import StepError
from labkit.secrets import register
from labkit.steps.base import Change, Diff, Step, Target, read_yaml_mapping

__all__ = ["K3S_KUBECONFIG", "Kubeconfig", "rewrite_kubeconfig", "save_private"]

K3S_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
_SECRET_KEYS = ("client-key-data", "token", "password", "client-certificate-data")


def _one(document: dict[str, Any], key: str) -> dict[str, Any]:
    entries = document.get(key) or []
    if len(entries) != 1 or not isinstance(entries[0], dict):
        raise StepError(
            f"kubeconfig: expected exactly one entry under {key!r}, found {len(entries)}; "
            "is this the file K3s wrote?"
        )
    return entries[0]


def rewrite_kubeconfig(document: dict[str, Any], server: str, name: str) -> dict[str, Any]:
    """K3s's kubeconfig pointing at ``server``, with cluster, user and context named ``name``."""
    result = copy.deepcopy(document)
    cluster, user, context = (_one(result, key) for key in ("clusters", "users", "contexts"))
    cluster.setdefault("cluster", {})["server"] = server
    cluster["name"] = name
    user["name"] = name
    context["name"] = name
    context["context"] = {**(context.get("context") or {}), "cluster": name, "user": name}
    result["current-context"] = name
    return result


def _register_credentials(document: dict[str, Any]) -> None:
    # Credentials in the file must be masked if any of them ever reaches a printer.
    for user in document.get("users") or []:
        for key, value in (user.get("user") or {}).items():
            if key in _SECRET_KEYS and isinstance(value, str):
                register(value)


def save_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True, repr=False)
class Kubeconfig(Step):
    """A local kubeconfig (params k3s.kubeconfig, mode 0600) reaching the first server."""

    name = "kubeconfig"

    def diff(self, target: Target) -> Diff:
        """Read the server's k3s.yaml and the local file; compare parsed documents and mode."""
        local = target.lab.path(target.lab.k3s.kubeconfig)
        remote = facts.read_file(target.host, K3S_KUBECONFIG)
        if remote is None:
            return Diff.cannot(
                f"{target.node.name} has no {K3S_KUBECONFIG} yet (K3s not installed there)"
            )
        document = read_yaml_mapping(remote, f"{target.node.name}:{K3S_KUBECONFIG}")
        _register_credentials(document)
        server = f"https://{target.node.address}:6443"
        wanted = rewrite_kubeconfig(document, server, target.lab.name)
        current: Any = None
        mode = None
        if local.is_file():
            current = read_yaml_mapping(local.read_text(encoding="utf-8"), str(local))
            mode = local.stat().st_mode & 0o777
        if current == wanted and mode == 0o600:
            return Diff.none(f"{local} reaches {server} as context {target.lab.name} (0600)")
        before = "absent" if current is None else f"differs (mode {mode:04o})"
        text = yaml.safe_dump(wanted, sort_keys=False)
        return Diff.change(
            Change(
                f"save kubeconfig {local}",
                before,
                f"context {target.lab.name} -> {server}, mode 0600",
                local=lambda: save_private(local, text),
            )
        )
