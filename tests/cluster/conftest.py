"""Fixtures for the cluster tests: the API double holding a healthy lab, its Lab, a Cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.cluster import Cluster
from labkit.params import Lab
from tests.kubeapi import KubeApi, fixtures


@pytest.fixture
def api() -> Iterator[KubeApi]:
    """A running double holding the healthy lab (tests break it as they need)."""
    with KubeApi() as double:
        fixtures.healthy_lab(double.store)
        yield double


@pytest.fixture
def lab(api: KubeApi, tmp_path: Path) -> Lab:
    """A homelab-kind Lab whose kubeconfig reaches the double."""
    result: Lab = api.lab(tmp_path / "lab")
    return result


@pytest.fixture
def cluster(lab: Lab) -> Iterator[Cluster]:
    """The lab's Cluster, closed after the test."""
    with Cluster.open(lab) as opened:
        yield opened
