"""End to end on real sandbox nodes (root): `labkit plan|apply --phase 1` converge; host untouched.

The nodes are this module's own: three sshd in network namespaces on a bridge and
a /24 of 10.81.0.0/16 picked from the process id, with copy-on-write /etc, /usr,
/var. A K3s token is planted in params and must never appear in any output.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labkit.checks import Status, run_checks
from labkit.cli import main
from labkit.hosts import Host
from labkit.params import Lab, load_lab
from labkit.results import write_results

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox nodes in namespaces need root"),
]

SUBNET = 10 + os.getpid() % 200
TOKEN = f"K10planted{os.getpid()}::server:do-not-print-me"


def _params(directory: Path, write_sandbox_params: object) -> Path:
    base = yaml.safe_load(write_sandbox_params(directory, name="phase1-test").read_text())  # type: ignore[operator]
    state = Path(base["sandbox"]["state_dir"])
    token = directory / "k3s-token"
    token.write_text(TOKEN)
    base["nodes"] = [
        {**node, "address": f"10.81.{SUBNET}.1{node['name'][-1]}"} for node in base["nodes"]
    ]
    base["sandbox"].update(bridge=f"lkt-plan{SUBNET}", gateway=f"10.81.{SUBNET}.1")
    base["allow_list"] = ["127.0.0.0/8", f"10.81.{SUBNET}.0/24"]
    base["k3s"] = {"kubeconfig": str(state / "kubeconfig.yaml"), "token": {"file": str(token)}}
    path = directory / "phase1.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, private_sandbox_params: object) -> Iterator[Lab]:
    from labkit.sandbox.nodes import start_nodes, stop_nodes

    lab = load_lab(_params(tmp_path_factory.mktemp("phase1"), private_sandbox_params))
    assert lab.sandbox is not None
    state = lab.path(lab.sandbox.state_dir)
    try:
        start_nodes(lab, state, progress=lambda _: None)
        yield lab
    finally:
        stop_nodes(lab, state)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_apply_converges_and_plan_is_then_empty(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="labkit")
    params = str(lab.source[-1])
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    code, shown_plan = _cli(
        capsys, "plan", "--params", params, "--phase", "1", "--json", str(before)
    )
    assert code == 0
    planned = json.loads(before.read_text())["nodes"]
    assert set(planned) == set(lab.node_names) and all(planned.values())

    code, shown_apply = _cli(
        capsys,
        "apply",
        "--params",
        params,
        "--phase",
        "1",
        "--json",
        str(tmp_path / "applied.json"),
    )
    assert code == 0, shown_apply
    assert "nothing left" in shown_apply

    code, shown_again = _cli(
        capsys, "plan", "--params", params, "--phase", "1", "--json", str(after)
    )
    assert code == 0
    document = json.loads(after.read_text())
    assert document["nodes"] == {name: [] for name in lab.node_names}
    cannot = json.dumps(document["cannot"])
    assert "k3s.airgap_dir" in cannot  # K3s itself: honest skip, nothing downloaded

    # The token reached the joining servers' config.yaml (through stdin) ...
    with Host(lab.node("k3s-node-02"), lab.ssh, lab) as host:
        config = yaml.safe_load(host.run(["cat", "/etc/rancher/k3s/config.yaml"]).stdout)
        mode = host.run(["stat", "-c", "%a", "/etc/rancher/k3s/config.yaml"]).stdout.strip()
        forward = host.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()
    assert config["token"] == TOKEN and mode == "600" and forward == "1"
    # ... while this machine's own files stayed as they were.
    assert not Path("/etc/rancher/k3s/config.yaml").exists()
    assert not Path("/etc/sysctl.d/90-k3s.conf").exists()

    results = run_checks(lab, phase=1)
    record = write_results(tmp_path / "results.json", lab=lab.name, checks=results.to_list())
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for text in (
        shown_plan,
        shown_apply,
        shown_again,
        before.read_text(),
        after.read_text(),
        (tmp_path / "applied.json").read_text(),
        json.dumps(record),
        logs,
    ):
        assert TOKEN not in text

    status = {(r.id, r.subject): r.status for r in results}
    for node in lab.node_names:
        for item in ("1.1.2", "1.1.3", "1.1.4", "1.1.5", "1.2.6"):
            assert status[(item, node)] is Status.PASS, (item, node, results.by_id(item))
        # The nodes run this machine's programs: with neither nft nor iptables-save here,
        # nobody read any packet-filter rules, and that is a skip, not "nothing filters".
        readable = shutil.which("nft") or shutil.which("iptables-save")
        assert status[("1.2.4", node)] is (Status.PASS if readable else Status.SKIP)
        assert status[("1.1.1", node)] is Status.SKIP  # a sandbox node does not boot
        assert status[("1.2.3", node)] in {Status.PASS, Status.SKIP}
        assert status[("1.3.1", node)] is Status.SKIP
    assert {r.status for r in results.by_id("1.1.6")} == {Status.SKIP}
    assert {r.status for r in results.by_id("1.3.2")} == {Status.SKIP}


def test_apply_refuses_nodes_that_are_not_isolated(lab: Lab, tmp_path: Path) -> None:
    from labkit import plan
    from labkit.errors import NotAllowed

    assert lab.sandbox is not None
    elsewhere = lab.model_copy(
        update={"sandbox": lab.sandbox.model_copy(update={"state_dir": tmp_path / "no-nodes"})}
    )
    with pytest.raises(NotAllowed, match="not isolated"):
        plan.apply(elsewhere, phase=1, progress=lambda _: None)
