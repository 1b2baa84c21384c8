"""Change Istio routing: shift a share of Shlink's traffic with the VirtualService's weights.

The roadmap's lab routes Shlink through an Istio Gateway and VirtualService
(manifests/istio/). Changing routing is a server-side apply of the
VirtualService with new ``route[].weight`` values, then reading Istio's view
back; it needs a Kubernetes API and labkit's cluster layer (no routing step in it yet), so on
the sandbox, which has neither Istio nor an API, the runbook is a skip with why.
"""

from __future__ import annotations

from labkit.params import Lab
from labkit.runbooks.base import Action, Runbook

__all__ = ["Routing"]

_REASON = (
    "Istio routing lives in a VirtualService: it needs a Kubernetes API with Istio and "
    "a routing step in labkit's cluster layer (labkit/cluster/ has none yet); the sandbox "
    "has neither"
)


class Routing(Runbook):
    """Plan the VirtualService change; cluster only."""

    name = "routing"
    title = "Change Istio routing"
    doc = "docs/runbooks/change-istio-routing.md"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab.name)
        self.lab = lab

    def actions(self) -> list[Action]:
        """Dry-run, apply and read back the VirtualService (all need the cluster layer)."""
        namespace = self.lab.shlink.namespace
        return [
            Action(
                "server-side dry run of the new VirtualService weights",
                f"kubectl -n {namespace} apply --server-side --dry-run=server "
                "-f manifests/istio/virtualservice.yaml",
                cannot=_REASON,
            ),
            Action(
                "apply, then read the routes back and send a probe load",
                f"kubectl -n {namespace} apply --server-side -f manifests/istio/virtualservice.yaml"
                f"; istioctl -n {namespace} x describe svc shlink",
                cannot=_REASON,
            ),
        ]

    def judge(self) -> tuple[bool, str]:
        """Never reached: every step is cluster-only."""
        return False, "routing needs a cluster"
