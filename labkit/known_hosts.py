"""How OpenSSH's known_hosts names a host; shared by the SSH client and the sandbox that writes it.

Its own module so that the sandbox (which writes known_hosts for its nodes) does not
import the SSH client (which opens sandbox nodes through the sandbox's records).
"""

from __future__ import annotations

__all__ = ["known_hosts_name"]


def known_hosts_name(address: str, port: int = 22) -> str:
    """How known_hosts names a host: ``address`` on port 22, else ``[address]:port``."""
    return address if port == 22 else f"[{address}]:{port}"
