"""Phase 0, preflight: what can be known before touching any machine."""

from __future__ import annotations

from labkit import compat
from labkit.checks.base import Context, Outcome, implements
from labkit.errors import ConfigError
from labkit.hosts import known_key_types
from labkit.params import address_allowed, load_lab


@implements("0.1.1")
def params_valid(context: Context) -> Outcome:
    """Re-read the params files from disk: they still validate as they did when loaded."""
    files = [str(path) for path in context.lab.files]
    if not files:
        return Outcome.skip("this lab was not loaded from files")
    try:
        reloaded = load_lab(*context.lab.files)
    except ConfigError as exc:
        return Outcome.judge(False, "the params files validate", str(exc), f"load_lab({files})")
    same = reloaded.model_dump() == context.lab.model_dump()
    return Outcome.judge(
        same,
        "the files validate and match the lab in use",
        "valid, unchanged since loaded" if same else "valid, but changed since loaded",
        f"load_lab({files}): {len(context.lab.nodes)} nodes",
    )


@implements("0.1.2")
def ssh_keys_present(context: Context) -> list[Outcome]:
    """Every node's SSH key file exists (or the node uses the agent)."""
    outcomes = []
    for node in context.lab.nodes:
        if node.ssh_key is None:
            outcomes.append(Outcome.skip("no key path: the SSH agent is used", node.name))
            continue
        path = context.lab.path(node.ssh_key)
        outcomes.append(
            Outcome.judge(
                path.is_file(),
                f"{path} is a file",
                "present" if path.is_file() else "missing",
                f"stat {path}",
                node.name,
            )
        )
    return outcomes


@implements("0.1.3")
def known_hosts_present(context: Context) -> list[Outcome]:
    """known_hosts (from params) holds each node's host key (unless trust-on-first-use).

    The sandbox writes its own known_hosts for wherever its nodes listen, so there the
    file must hold keys; elsewhere each node's address (and port) is looked up.
    """
    lab = context.lab
    path = lab.path(lab.ssh.known_hosts)
    tofu = lab.ssh.trust_on_first_use
    if not path.is_file():
        if tofu:
            return [Outcome.skip(f"{path} missing; trust_on_first_use will record keys")]
        return [
            Outcome.judge(
                False, f"{path} exists", "missing (and trust_on_first_use is off)", f"stat {path}"
            )
        ]
    try:
        if lab.kind == "sandbox":
            lines = [
                line
                for line in path.read_text().splitlines()
                if len(line.split()) >= 3 and not line.lstrip().startswith("#")
            ]
            return [
                Outcome.judge(
                    bool(lines), f"{path} holds host keys", f"{len(lines)} keys", f"read {path}"
                )
            ]
        found = {
            node.name: known_key_types(path, node.address, node.ssh_port) for node in lab.nodes
        }
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        return [Outcome.judge(False, f"{path} readable", str(exc), f"read {path}")]
    outcomes = []
    for node in lab.nodes:
        where = f"{node.address}:{node.ssh_port}"
        if not found[node.name] and tofu:
            outcomes.append(
                Outcome.skip(
                    f"no key for {where} yet; trust_on_first_use will record it", node.name
                )
            )
            continue
        outcomes.append(
            Outcome.judge(
                bool(found[node.name]),
                f"a host key for {where} in {path}",
                ", ".join(found[node.name]) or "none (add it: ssh-keyscan, after verifying)",
                f"lookup in {path}",
                node.name,
            )
        )
    return outcomes


@implements("0.1.4")
def versions_compatible(context: Context) -> list[Outcome]:
    """Each pinned component supports the pinned Kubernetes version (sourced table)."""
    verdicts = compat.evaluate(context.lab.versions)
    if not verdicts:
        return [Outcome.skip("no compatibility rule covers these pins")]
    return [
        Outcome.judge(
            verdict.ok,
            verdict.expected,
            f"Kubernetes {verdict.kubernetes}",
            verdict.rule.source,
            verdict.subject,
        )
        for verdict in verdicts
    ]


@implements("0.1.5")
def addresses_allowed(context: Context) -> list[Outcome]:
    """Every node address is in the allow-list (labkit contacts nothing else)."""
    lab = context.lab
    return [
        Outcome.judge(
            address_allowed(node.address, lab.allow_list),
            f"{node.address} within {lab.allow_list}",
            "allowed" if address_allowed(node.address, lab.allow_list) else "not allowed",
            "params allow_list",
            node.name,
        )
        for node in lab.nodes
    ]


@implements("0.1.6")
def secrets_resolve(context: Context) -> list[Outcome]:
    """Each secret reference resolves here (values are never shown)."""
    outcomes = []
    for name, ref in context.lab.secret_refs().items():
        if ref.kind == "kubernetes":
            outcomes.append(Outcome.skip(f"{ref.describe()} is read from the cluster", name))
            continue
        try:
            context.lab.secret(ref)
        except ConfigError as exc:
            outcomes.append(Outcome.judge(False, "resolves", str(exc), ref.describe(), name))
            continue
        outcomes.append(Outcome.judge(True, "resolves", "resolved", ref.describe(), name))
    return outcomes
