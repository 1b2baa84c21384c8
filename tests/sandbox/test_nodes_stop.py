"""stop_nodes goes on past a node that will not stop (in memory: nothing is started or removed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import LabkitError
from labkit.params import Node, load_lab
from labkit.sandbox import nodes

REPOSITORY = Path(__file__).resolve().parents[2]


def test_one_node_that_will_not_stop_does_not_leave_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = load_lab(REPOSITORY / "params" / "local.yaml")
    attempted: list[str] = []

    def stop_node(lab: object, state_dir: Path, node: Node, *_: object, **__: object) -> None:
        attempted.append(node.name)
        if node.name == "k3s-node-02":
            raise LabkitError("sshd pid 4242 survived SIGKILL")

    monkeypatch.setattr(nodes, "_stop_node", stop_node)
    monkeypatch.setattr(nodes, "_namespaces", set)
    monkeypatch.setattr(nodes, "_links", set)  # never touch a real bridge here
    with pytest.raises(LabkitError, match="k3s-node-02: sshd pid 4242 survived SIGKILL"):
        nodes.stop_nodes(lab, tmp_path)
    assert attempted == ["k3s-node-01", "k3s-node-02", "k3s-node-03"]
