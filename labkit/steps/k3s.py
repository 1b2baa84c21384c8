"""K3s HA (roadmap 1.3): config.yaml, the pinned binary (air-gap or installer), the service.

The first server (``k3s.cluster_init_node``) starts the cluster with
``cluster-init``; the others join it with ``server`` and the shared token.
Every server gets the same critical settings through /etc/rancher/k3s/config.yaml,
which the install script does not manage, so a rerun changes nothing. The token
comes from params or, once the first server is installed, from its token file;
it is a Secret and travels only inside config.yaml on stdin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labkit import facts
from labkit.params import Lab, Node
from labkit.secrets import MASK, Secret
from labkit.steps.base import Change, Diff, Step, Target, read_yaml_mapping, write_file

__all__ = [
    "CONFIG_FILE",
    "INSTALL_SCRIPT",
    "TOKEN_FILE",
    "K3sBinary",
    "K3sConfig",
    "K3sService",
    "airgap_files",
    "cluster_token",
    "desired_config",
    "first_server",
]

CONFIG_FILE = "/etc/rancher/k3s/config.yaml"
TOKEN_FILE = f"{facts.K3S_DATA_DIR}/server/token"
INSTALL_SCRIPT = "/usr/local/bin/k3s-install.sh"
BINARY = "/usr/local/bin/k3s"
IMAGES_DIR = f"{facts.K3S_DATA_DIR}/agent/images"
_IMAGE_SUFFIXES = (".tar", ".tar.gz", ".tar.zst")


def first_server(lab: Lab) -> Node:
    """The node that initialises the cluster."""
    return lab.node(lab.k3s.cluster_init_node)


def cluster_token(target: Target) -> Secret | None:
    """The shared token: from params, else the first server's token file; None until it exists."""
    cached = target.shared.get("k3s-token")
    if isinstance(cached, Secret):
        return cached
    lab = target.lab
    token: Secret | None = None
    if lab.k3s.token is not None:
        token = lab.secret(lab.k3s.token)
    else:
        first = first_server(lab)
        host = target.hosts.get(first.name, target.host if target.node == first else None)
        if host is not None:
            result = host.run(["cat", TOKEN_FILE], check=False)
            if result.exit_code == 0 and result.stdout.strip():
                token = Secret(result.stdout.strip(), f"{first.name}:{TOKEN_FILE}")
    if token is not None:
        target.shared["k3s-token"] = token
    return token


def desired_config(lab: Lab, node: Node, token: Secret | None) -> dict[str, Any]:
    """config.yaml for ``node``: the same critical settings everywhere, cluster-init or server."""
    first = first_server(lab)
    config: dict[str, Any] = {"node-ip": node.address}
    if node.role == "server":
        config["write-kubeconfig-mode"] = lab.k3s.write_kubeconfig_mode
        config["tls-san"] = [n.address for n in lab.nodes if n.role == "server"]
        config["disable"] = list(lab.k3s.disable)
        if lab.k3s.wireguard:
            config["flannel-backend"] = "wireguard-native"
    if node.name == first.name:
        config["cluster-init"] = True
    else:
        config["server"] = f"https://{first.address}:6443"
    if token is not None:
        config["token"] = token.reveal()
    return config


# Settings whose values are credentials (token, agent-token, etcd-s3-secret-key, a
# datastore-endpoint with its password): a plan shows that they differ, never their values.
_CREDENTIAL_KEY = re.compile(r"token|secret|password|datastore-endpoint|-key$")


def _masked(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return {k: MASK if _CREDENTIAL_KEY.search(str(k)) else v for k, v in config.items()}


def _delta(current: dict[str, Any] | None, wanted: dict[str, Any]) -> tuple[str, str]:
    if current is None:
        return "(absent)", ", ".join(sorted(wanted))
    shown_now, shown_want = _masked(current) or {}, _masked(wanted) or {}
    keys = sorted(k for k in set(current) | set(wanted) if current.get(k) != wanted.get(k))
    before = ", ".join(f"{k}={shown_now.get(k, '(unset)')}" for k in keys)
    after = ", ".join(f"{k}={shown_want.get(k, '(unset)')}" for k in keys)
    return before, after


@dataclass(frozen=True, repr=False)
class K3sConfig(Step):
    """/etc/rancher/k3s/config.yaml holds this node's settings (mode 0600: it holds the token)."""

    name = "k3s-config"

    def diff(self, target: Target) -> Diff:
        """Compare the parsed remote config.yaml with the desired settings."""
        first = first_server(target.lab)
        token = cluster_token(target)
        if token is None and target.node.name != first.name:
            return Diff.cannot(
                f"waiting for the cluster token: K3s is not installed on {first.name} yet; "
                f"apply does this step in the same run once it is (the token read from its "
                f"{TOKEN_FILE}), or set k3s.token in params"
            )
        if target.node.name == first.name and target.lab.k3s.token is None:
            # The first server makes the token at install; its config does not carry it
            # (else the config written before install would differ right after it).
            token = None
        wanted = desired_config(target.lab, target.node, token)
        saved = facts.read_file(target.host, CONFIG_FILE)
        where = f"{target.node.name}:{CONFIG_FILE}"
        current = read_yaml_mapping(saved, where) if saved is not None else None
        if current == wanted:
            return Diff.none(f"{CONFIG_FILE} has the desired {len(wanted)} settings")
        before, after = _delta(current, wanted)
        content = yaml.safe_dump(wanted, sort_keys=True)
        return Diff.change(write_file(CONFIG_FILE, content, before, after, mode=0o600))


def airgap_files(directory: Path) -> tuple[Path | None, Path | None, list[Path]]:
    """(k3s binary, install.sh, image tarballs) found in an air-gap directory."""
    binary = next((directory / n for n in ("k3s", "k3s-amd64") if (directory / n).is_file()), None)
    script = next(
        (directory / n for n in ("install.sh", "k3s-install.sh") if (directory / n).is_file()),
        None,
    )
    images = sorted(p for p in directory.iterdir() if p.name.endswith(_IMAGE_SUFFIXES))
    return binary, script, images


def _same_version(installed: str | None, pinned: str) -> bool:
    return installed is not None and installed.lstrip("v") == pinned.lstrip("v")


@dataclass(frozen=True, repr=False)
class K3sBinary(Step):
    """K3s at the pinned version, installed from the air-gap directory or by the install script."""

    name = "k3s-install"

    def diff(self, target: Target) -> Diff:
        """Read ``k3s --version`` and whether etcd data exists."""
        lab = target.lab
        pinned = lab.versions.k3s
        installed, etcd = facts.k3s_installed(target.host)
        if _same_version(installed, pinned):
            return Diff.none(
                f"k3s {installed} installed, etcd data {'present' if etcd else 'absent'}"
            )
        if target.node.name != lab.k3s.cluster_init_node and cluster_token(target) is None:
            return Diff.cannot(
                f"waiting for {lab.k3s.cluster_init_node}: a joining server needs the cluster token"
            )
        before = f"k3s {installed}" if installed else "not installed"
        role = target.node.role
        install_env = [f"INSTALL_K3S_VERSION={pinned}", f"INSTALL_K3S_EXEC={role}"]
        run_installer = ("env", *install_env, "sh", INSTALL_SCRIPT)
        if lab.k3s.airgap_dir is not None:
            return self._airgap(target, lab.path(lab.k3s.airgap_dir), before, pinned, install_env)
        if not lab.internet:
            return Diff.cannot(
                f"k3s {pinned} is {before} and there is nothing to install from: set "
                "k3s.airgap_dir to a folder with the k3s binary and install.sh "
                f"(lab {lab.name} has no internet, and labkit downloads nothing then)"
            )
        return Diff.change(
            Change(
                "fetch the K3s install script",
                "absent",
                INSTALL_SCRIPT,
                ("curl", "-sfL", "--max-time", "120", "-o", INSTALL_SCRIPT, "https://get.k3s.io"),
            ),
            Change(f"install k3s {pinned}", before, f"k3s {pinned}", run_installer, timeout_s=900),
        )

    def _airgap(
        self, target: Target, directory: Path, before: str, pinned: str, install_env: list[str]
    ) -> Diff:
        if not directory.is_dir():
            return Diff.cannot(f"air-gap directory {directory} does not exist on this machine")
        binary, script, images = airgap_files(directory)
        if binary is None or script is None:
            return Diff.cannot(
                f"air-gap directory {directory} needs the k3s binary (k3s or k3s-amd64) and "
                f"install.sh; found {sorted(p.name for p in directory.iterdir())}"
            )
        changes = [
            Change(
                f"upload {binary.name}",
                before,
                BINARY,
                ("chmod", "0755", BINARY),
                upload=binary,
                upload_to=BINARY,
                timeout_s=300,
            ),
            Change(
                f"upload {script.name}",
                "absent",
                INSTALL_SCRIPT,
                ("chmod", "0755", INSTALL_SCRIPT),
                upload=script,
                upload_to=INSTALL_SCRIPT,
            ),
        ]
        if images:
            changes.append(
                Change("create images dir", "absent", IMAGES_DIR, ("mkdir", "-p", IMAGES_DIR))
            )
            changes += [
                Change(
                    f"upload {image.name}",
                    "absent",
                    f"{IMAGES_DIR}/{image.name}",
                    ("test", "-s", f"{IMAGES_DIR}/{image.name}"),
                    upload=image,
                    upload_to=f"{IMAGES_DIR}/{image.name}",
                    timeout_s=900,
                )
                for image in images
            ]
        argv = ("env", "INSTALL_K3S_SKIP_DOWNLOAD=true", *install_env, "sh", INSTALL_SCRIPT)
        changes.append(
            Change(f"install k3s {pinned} (air-gap)", before, f"k3s {pinned}", argv, timeout_s=900)
        )
        return Diff.change(*changes)


@dataclass(frozen=True, repr=False)
class K3sService(Step):
    """The k3s (or k3s-agent) unit is active and started after config.yaml last changed."""

    name = "k3s-service"

    def diff(self, target: Target) -> Diff:
        """Read the unit's state and compare its start time with config.yaml's."""
        unit = facts.k3s_unit(target.node.role)
        if facts.k3s_version(target.host) is None:
            return Diff.cannot(
                "K3s is not installed on this node yet, so there is no service to run "
                "(apply checks it again right after installing)"
            )
        state, started = facts.k3s_service(target.host, unit)
        restart = ("systemctl", "restart", unit)
        if state != "active":
            return Diff.change(Change(f"start {unit}", state, "active", restart, timeout_s=300))
        changed = facts.mtime(target.host, CONFIG_FILE)
        if started is not None and changed is not None and changed > started:
            return Diff.change(
                Change(
                    f"restart {unit}: {CONFIG_FILE} changed since it started",
                    "stale config",
                    "active with current config",
                    restart,
                    timeout_s=300,
                )
            )
        return Diff.none(f"{unit} is active with the current {CONFIG_FILE}")
