"""The kernel's route to an address, and the guard that keeps sandbox addresses on their bridge.

The sandbox's node subnet (10.77.0.0/24 by default) is real only while the
sandbox's bridge exists and carries it. With the sandbox down this machine
routes such an address like any other: out through its default gateway, to
whatever answers there. ``require_sandbox_route`` proves from the kernel's own
state, without sending a packet, that the bridge exists, is up with a node
attached, and is the device the kernel would send the address through;
otherwise it raises ``SandboxDown`` before any socket exists.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from labkit.errors import SandboxDown

__all__ = [
    "SANDBOX_DOWN",
    "Bridged",
    "Route",
    "bridge_state",
    "in_sandbox_network",
    "require_sandbox_route",
    "route_to",
    "sandbox_network",
]

SANDBOX_DOWN = "the sandbox is not running: `labkit sandbox up`"
_SYS_NET = Path("/sys/class/net")
_IP_TIMEOUT_S = 5.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Bridged(Protocol):
    """What the guard needs of a lab's sandbox settings (``params.SandboxSettings``)."""

    @property
    def bridge(self) -> str: ...

    @property
    def gateway(self) -> str: ...

    @property
    def prefix_length(self) -> int: ...


@dataclass(frozen=True)
class Route:
    """The kernel's answer to "how would you send to this address": device, gateway if any."""

    device: str
    gateway: str | None


def sandbox_network(settings: Bridged) -> Network:
    """The sandbox's node subnet: its gateway's network at its prefix length."""
    return ipaddress.ip_network(f"{settings.gateway}/{settings.prefix_length}", strict=False)


def in_sandbox_network(settings: Bridged, address: str) -> bool:
    """True when ``address`` is an IP inside the sandbox's node subnet (a name never is)."""
    try:
        return ipaddress.ip_address(address) in sandbox_network(settings)
    except ValueError:
        return False


def route_to(address: str) -> Route | None:
    """How the kernel would send to ``address`` (``ip route get``; no packet), None: no route."""
    try:
        done = subprocess.run(
            ["ip", "-j", "route", "get", address],
            capture_output=True,
            text=True,
            timeout=_IP_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise SandboxDown(
            f"{address}: cannot read this machine's routes: `ip` is not installed "
            "(apt-get install -y iproute2); nothing was sent"
        ) from None
    except subprocess.TimeoutExpired:
        raise SandboxDown(
            f"{address}: `ip route get` did not answer within {_IP_TIMEOUT_S:g}s; nothing was sent"
        ) from None
    if done.returncode != 0:
        return None  # "Network is unreachable": the kernel has no route at all
    try:
        entries = json.loads(done.stdout)
        entry = entries[0]
        return Route(str(entry["dev"]), entry.get("gateway"))
    except (ValueError, LookupError, TypeError):
        return None


def bridge_state(name: str) -> str:
    """``missing``, ``not a bridge``, or the bridge's operational state (``up``, ``down``...)."""
    device = _SYS_NET / name
    if not device.exists():
        return "missing"
    if not (device / "bridge").is_dir():
        return "not a bridge"
    try:
        return (device / "operstate").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def require_sandbox_route(settings: Bridged, address: str, up_command: str = "") -> None:
    """SandboxDown unless ``address`` (when in the sandbox's subnet) goes through its bridge.

    Addresses outside the subnet pass untouched. ``up_command`` adds what to run when
    it is not the default (e.g. ``--params FILE``).
    """
    if not in_sandbox_network(settings, address):
        return
    bridge = settings.bridge
    state = bridge_state(bridge)
    reason = ""
    if state == "missing":
        reason = f"its bridge {bridge} does not exist"
    elif state != "up":
        reason = f"its bridge {bridge} is {state}" + (
            "" if state == "not a bridge" else " (no node attached)"
        )
    else:
        route = route_to(address)
        if route is None:
            reason = f"this machine has no route to {address}"
        elif route.device != bridge or route.gateway is not None:
            via = f" via {route.gateway}" if route.gateway else ""
            reason = f"this machine routes {address}{via} dev {route.device}, not bridge {bridge}"
    if reason:
        hint = f" with {up_command}" if up_command else ""
        raise SandboxDown(
            f"{address} is a sandbox address but {SANDBOX_DOWN}{hint} ({reason}; "
            "nothing was sent to it)"
        )
