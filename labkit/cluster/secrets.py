"""Secret references that point into the cluster: ``{kubernetes: namespace/name/key}``."""

from __future__ import annotations

from labkit.cluster.client import Cluster
from labkit.params import Lab
from labkit.secrets import Secret, SecretRef

__all__ = ["resolve_secret"]


def resolve_secret(lab: Lab, ref: SecretRef, cluster: Cluster | None = None) -> Secret:
    """A secret from params: env and file as usual, a Kubernetes Secret's key through the API.

    The value is base64-decoded and registered for masking like every other secret.
    Without ``cluster``, the lab's cluster is opened (allow-list checked) and closed.
    """
    if ref.kind != "kubernetes" or ref.kubernetes is None:
        return lab.secret(ref)
    namespace, name, key = ref.kubernetes.split("/")
    if cluster is None:
        with Cluster.open(lab) as opened:
            return opened.secret_value(namespace, name, key)
    return cluster.secret_value(namespace, name, key)
