"""The sandbox's forwarding fence: its nodes reach each other and this machine, nothing beyond.

A node's default route goes through the bridge's gateway, which is this machine.
When this machine forwards IPv4 (``net.ipv4.ip_forward=1``, as container and VM
hosts do), it would carry a node's packets on to its other networks: the LAN,
the internet. While isolated nodes run, the sandbox owns an nftables table,
``inet labkit-<bridge>``, whose forward chain drops whatever would be routed into
or out of the bridge through any other interface. Traffic between nodes (bridged)
and to this machine itself (not forwarded) is untouched, and so is every other
table. ``stop_nodes`` deletes the table; nothing else of the machine's firewall
is read or changed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from labkit.errors import LabkitError

__all__ = ["NFT", "ensure_fence", "fence_present", "fence_rules", "remove_fence", "table_name"]

NFT = "nft"
_SBIN_NFT = Path("/usr/sbin/nft")
_TIMEOUT_S = 20.0


def table_name(bridge: str) -> str:
    """The sandbox's own nftables table for ``bridge`` (family ``inet``)."""
    return f"labkit-{bridge}"


def fence_rules(bridge: str) -> str:
    """The table as nft reads it: forwarding across the bridge's edge is dropped."""
    quoted = f'"{bridge}"'
    return (
        f"table inet {table_name(bridge)} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        f"    iifname {quoted} oifname != {quoted} drop\n"
        f"    oifname {quoted} iifname != {quoted} drop\n"
        "  }\n"
        "}\n"
    )


def _binary() -> str | None:
    """nft's path; /usr/sbin is often not on a user's PATH."""
    found = shutil.which(NFT)
    return found or (str(_SBIN_NFT) if _SBIN_NFT.is_file() else None)


def _nft(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [_binary() or NFT, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise LabkitError(
            "sandbox nodes: nft is not installed; apt-get install -y nftables (isolated nodes "
            "need it: a rule keeps them from routing beyond their bridge)"
        ) from None
    except subprocess.TimeoutExpired:
        raise LabkitError(
            f"sandbox nodes: {NFT} {shlex.join(argv)} did not finish in {_TIMEOUT_S:g}s"
        ) from None


def fence_present(bridge: str) -> bool:
    """True when the sandbox's table for ``bridge`` exists in this network namespace."""
    return _nft(["list", "table", "inet", table_name(bridge)]).returncode == 0


def ensure_fence(bridge: str) -> None:
    """Create (or replace, atomically) the sandbox's table for ``bridge``."""
    table = table_name(bridge)
    # One transaction: declare (so delete never fails), delete, then the table as it must be.
    script = f"table inet {table}\ndelete table inet {table}\n{fence_rules(bridge)}"
    done = _nft(["-f", "-"], stdin=script)
    if done.returncode != 0:
        raise LabkitError(
            f"sandbox nodes: nft could not add table inet {table} "
            f"({done.stderr.strip() or done.stdout.strip()}); the nodes would not be fenced "
            "from this machine's other networks, so they are not started"
        )


def remove_fence(bridge: str) -> None:
    """Delete the sandbox's table for ``bridge`` (nothing when it is not there)."""
    if _binary() is None:
        return  # without nft no table was ever made
    if not fence_present(bridge):
        return
    done = _nft(["delete", "table", "inet", table_name(bridge)])
    if done.returncode != 0 and fence_present(bridge):
        raise LabkitError(
            f"sandbox nodes: nft could not delete table inet {table_name(bridge)} "
            f"({done.stderr.strip()}); delete it with: nft delete table inet {table_name(bridge)}"
        )
