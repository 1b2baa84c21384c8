"""Which component versions work together: a small table, each row with its source."""

from __future__ import annotations

import re
from dataclasses import dataclass

from labkit.params import Versions

__all__ = ["RULES", "Rule", "Verdict", "evaluate", "kubernetes_minor"]


@dataclass(frozen=True)
class Rule:
    """``component`` at ``version_prefix`` supports Kubernetes minors ``low``..``high``."""

    component: str
    version_prefix: str
    kubernetes_low: int
    kubernetes_high: int | None
    source: str


@dataclass(frozen=True)
class Verdict:
    """One rule applied to the lab's pins."""

    rule: Rule
    component_version: str
    kubernetes: str
    ok: bool

    @property
    def subject(self) -> str:
        """``istio 1.24.2 on Kubernetes 1.33``."""
        return f"{self.rule.component} {self.component_version} on Kubernetes {self.kubernetes}"

    @property
    def expected(self) -> str:
        """The supported range in words."""
        high = f"1.{self.rule.kubernetes_high}" if self.rule.kubernetes_high else "newer"
        return f"Kubernetes 1.{self.rule.kubernetes_low} to {high}"


RULES: tuple[Rule, ...] = (
    Rule(
        "istio",
        "1.24",
        28,
        31,
        "istio.io 'Announcing Istio 1.24': supported on Kubernetes 1.28 to 1.31; "
        "istioctl refuses < 1.28 (istio/istio@1.24.6 k8sversion/version.go MinK8SVersion=28)",
    ),
    Rule(
        "pgo",
        "v6",
        30,
        None,
        "postgres-operator pkg/apis/postgres-operator.crunchydata.com/README.md: "
        "the v1 API needs Kubernetes >= 1.30",
    ),
)


def kubernetes_minor(k3s_version: str) -> int:
    """``33`` for ``v1.33.6+k3s1``."""
    match = re.match(r"^v?1\.(\d+)", k3s_version)
    if not match:
        raise ValueError(f"cannot read a Kubernetes minor from k3s version {k3s_version!r}")
    return int(match.group(1))


def evaluate(versions: Versions) -> list[Verdict]:
    """Every rule that applies to these pins, with its verdict."""
    minor = kubernetes_minor(versions.k3s)
    verdicts = []
    for rule in RULES:
        version = str(getattr(versions, rule.component))
        if not version.removeprefix("v").startswith(rule.version_prefix.removeprefix("v")):
            continue
        high_ok = rule.kubernetes_high is None or minor <= rule.kubernetes_high
        verdicts.append(
            Verdict(rule, version, f"1.{minor}", rule.kubernetes_low <= minor and high_ok)
        )
    return verdicts
