"""The sandbox: the lab in miniature on this machine, from real software.

``Sandbox(lab).up()`` starts SSH nodes, PostgreSQL primary + standby, Redis
with replicas and Sentinels, and the Shlink-compatible service, all bound to
loopback or the sandbox's own namespaces, with state under
``lab.sandbox.state_dir``; ``down()`` stops them; ``status()`` describes them.
"""

from labkit.sandbox.supervisor import Sandbox, ensure_up, state_dir_of

__all__ = ["Sandbox", "ensure_up", "state_dir_of"]
