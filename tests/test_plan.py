"""Plan and apply over in-memory nodes: diff writes nothing, apply converges, errors name nodes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "steps"))  # the in-memory test Host
from fakehost import FakeHost, Reply, ubuntu_node

from labkit import plan
from labkit.errors import ConfigError, StepError
from labkit.params import Lab, load_lab
from labkit.secrets import MASK

LOCAL = Path(__file__).resolve().parent.parent / "params" / "local.yaml"
ADDRESSES = {"k3s-node-01": "10.77.0.11", "k3s-node-02": "10.77.0.12", "k3s-node-03": "10.77.0.13"}


def lab_of(tmp_path: Path) -> Lab:
    """A homelab-like lab (own kernels) without internet: node prep converges, K3s cannot."""
    lab = load_lab(LOCAL)
    k3s = lab.k3s.model_copy(update={"kubeconfig": tmp_path / "kubeconfig.yaml"})
    return lab.model_copy(update={"kind": "homelab", "internet": False, "k3s": k3s})


def nodes(fresh: bool = True) -> dict[str, FakeHost]:
    found = {name: ubuntu_node(name, address, fresh=fresh) for name, address in ADDRESSES.items()}
    if fresh:  # without internet a missing package cannot be installed: keep them present
        for name, host in found.items():
            found[name] = ubuntu_node(name, host.address, fresh=True, packages=())
    return found


def test_diff_lists_changes_per_node_and_writes_nothing(tmp_path: Path) -> None:
    hosts = nodes()
    result = plan.diff(lab_of(tmp_path), hosts, phase=1)
    changes = result.changes()
    assert list(changes) == list(ADDRESSES)
    assert all(changes[name] for name in ADDRESSES)
    assert {"hostname", "swap", "kernel-modules", "sysctl"} <= {
        c["step"] for c in changes["k3s-node-02"]
    }
    assert all(host.writes() == [] for host in hosts.values())
    cannot = result.cannot()
    assert any("k3s.airgap_dir" in item["reason"] for item in cannot["k3s-node-01"])
    json.dumps(result.to_dict())  # JSON-ready
    assert "k3s-node-01" in result._repr_html_() and "change" in result.text()


def test_apply_converges_then_plan_is_empty(tmp_path: Path) -> None:
    hosts = nodes()
    lines: list[str] = []
    after = plan.apply(lab_of(tmp_path), hosts, phase=1, progress=lines.append)
    assert after.pending == 0
    assert after.evidence and all(item.applied and item.exit_code == 0 for item in after.evidence)
    first = next(item for item in after.evidence if item.step == "hostname")
    assert (first.before, first.after) == ("ubuntu", first.node)
    again = plan.diff(lab_of(tmp_path), hosts, phase=1)
    assert again.changes() == {name: [] for name in ADDRESSES}
    assert any("== 1.2 node preparation" in line for line in lines)


def test_prepared_nodes_only_lack_the_first_servers_config(tmp_path: Path) -> None:
    result = plan.diff(lab_of(tmp_path), nodes(fresh=False), phase=1)
    steps = {name: [c["step"] for c in cs] for name, cs in result.changes().items()}
    assert steps == {"k3s-node-01": ["k3s-config"], "k3s-node-02": [], "k3s-node-03": []}


def test_failure_on_two_nodes_names_both(tmp_path: Path) -> None:
    hosts = nodes()
    for name in ("k3s-node-02", "k3s-node-03"):
        hosts[name].answers[("swapoff", "-a")] = Reply(
            255, "", "swapoff: /swap.img: Operation not permitted"
        )
    with pytest.raises(StepError) as caught:
        plan.apply(lab_of(tmp_path), hosts, phase=1, progress=lambda _: None)
    message = str(caught.value)
    assert "2 node(s) failed (k3s-node-02, k3s-node-03)" in message
    assert "'swapoff -a' exited 255" in message and "Operation not permitted" in message
    assert "k3s-node-01:" not in message


def test_a_step_that_does_not_converge_is_a_step_error(tmp_path: Path) -> None:
    hosts = nodes()
    hosts["k3s-node-01"].answers[("hostname", "k3s-node-01")] = (
        Reply()
    )  # claims success, changes nothing
    with pytest.raises(StepError, match=r"1 change\(s\) left after apply \(k3s-node-01: hostname"):
        plan.apply(lab_of(tmp_path), hosts, phase=1, progress=lambda _: None)


@pytest.mark.parametrize("given", [9, "9", "1.9", "4", "0"])
def test_a_phase_labkit_does_not_plan_is_refused_naming_the_valid_ones(
    tmp_path: Path, given: int | str
) -> None:
    with pytest.raises(ConfigError, match=r"no plan for it; it plans phases and steps 1, 1\.2"):
        plan.diff(lab_of(tmp_path), nodes(), phase=given)


def test_a_step_plans_its_own_stages_only(tmp_path: Path) -> None:
    result = plan.diff(lab_of(tmp_path), nodes(), phase="1.2")
    assert result.entries and {e.stage for e in result.entries} == {"1.2 node preparation"}
    k3s = plan.diff(lab_of(tmp_path), nodes(), phase="1.3")
    assert k3s.entries and all(e.stage.startswith("1.3 ") for e in k3s.entries)


def test_planted_token_never_in_plan_output(tmp_path: Path) -> None:
    token = "K10-planted-plan-token-5e9d7c"
    secret = tmp_path / "token"
    secret.write_text(token)
    from labkit.secrets import SecretRef

    lab = lab_of(tmp_path)
    lab = lab.model_copy(
        update={"k3s": lab.k3s.model_copy(update={"token": SecretRef(file=secret)})}
    )
    hosts = nodes()
    result = plan.apply(lab, hosts, phase=1, progress=lambda _: None)
    written = hosts["k3s-node-02"].files["/etc/rancher/k3s/config.yaml"]
    assert token in written  # it reached the node, through stdin
    shown = json.dumps(result.to_dict()) + result.text() + result._repr_html_() + repr(result)
    assert token not in shown
    assert all(token not in " ".join(call) for host in hosts.values() for call in host.calls)
    hosts["k3s-node-03"].files["/etc/rancher/k3s/config.yaml"] = written.replace(token, "old-token")
    drift = plan.diff(lab, hosts, phase=1).to_dict()
    assert token not in json.dumps(drift) and f"token={MASK}" in json.dumps(drift)


def _k3s_node(lab: Lab, name: str, address: str, clock: list[int]) -> FakeHost:
    """A node where the K3s installer really 'installs': version, service, token, kubeconfig."""
    from labkit.steps.k3s import CONFIG_FILE, INSTALL_SCRIPT, TOKEN_FILE

    host = ubuntu_node(name, address, packages=tuple(lab.k3s.packages))
    state: dict[str, int | None] = {"started": None, "config_mtime": None}

    def install(h: FakeHost) -> Reply:
        clock[0] += 10
        state["started"] = clock[0]
        if name == lab.k3s.cluster_init_node:
            h.files[TOKEN_FILE] = "K10generated-at-install::server:0123456789\n"
        h.files["/etc/rancher/k3s/k3s.yaml"] = (
            "clusters: [{name: default, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
            "users: [{name: default, user: {}}]\n"
            "contexts: [{name: default, context: {cluster: default, user: default}}]\n"
        )
        return Reply()

    def restart(h: FakeHost) -> Reply:
        clock[0] += 10
        state["started"] = clock[0]
        return Reply()

    answer = host._answer

    def answer_and_stamp(key: tuple[str, ...], stdin: str | None) -> Reply:
        if key[:3] == ("install", "-D", "-m") and key[-1] == CONFIG_FILE:
            clock[0] += 1
            state["config_mtime"] = clock[0]
        return answer(key, stdin)

    host._answer = answer_and_stamp  # type: ignore[method-assign]
    installed = lambda: state["started"] is not None  # noqa: E731
    host.answers.update(
        {
            ("/usr/local/bin/k3s", "--version"): lambda h: (
                Reply(0, f"k3s version {lab.versions.k3s} (x)\n")
                if installed()
                else Reply(127, "", "not found")
            ),
            ("test", "-d", "/var/lib/rancher/k3s/server/db/etcd"): lambda h: Reply(
                0 if installed() else 1
            ),
            ("curl", "-sfL", "--max-time", "120", "-o", INSTALL_SCRIPT, "https://get.k3s.io"): (
                Reply()
            ),
            (
                "env",
                f"INSTALL_K3S_VERSION={lab.versions.k3s}",
                "INSTALL_K3S_EXEC=server",
                "sh",
                INSTALL_SCRIPT,
            ): install,
            ("systemctl", "show", "k3s", "--property=ActiveState", "--property=MainPID"): (
                lambda h: Reply(
                    0,
                    "ActiveState=active\nMainPID=42\n"
                    if installed()
                    else "ActiveState=inactive\nMainPID=0\n",
                )
            ),
            ("systemctl", "restart", "k3s"): restart,
            ("date", "+%s"): lambda h: Reply(0, f"{clock[0]}\n"),
            ("ps", "-o", "etimes=", "-p", "42"): lambda h: Reply(
                0, f"{clock[0] - (state['started'] or 0)}\n"
            ),
            ("stat", "-c", "%Y", CONFIG_FILE): lambda h: Reply(0, f"{state['config_mtime']}\n"),
        }
    )
    return host


def test_a_fresh_cluster_without_a_token_in_params_converges_in_one_apply(
    tmp_path: Path,
) -> None:
    # The first server makes the token at install; its config.yaml must not want it
    # afterwards, or the first apply fails its own re-check and a second one restarts K3s.
    lab = lab_of(tmp_path).model_copy(update={"internet": True})
    assert lab.k3s.token is None
    clock = [1000]
    hosts = {name: _k3s_node(lab, name, address, clock) for name, address in ADDRESSES.items()}
    after = plan.apply(lab, hosts, phase=1, progress=lambda _: None)
    assert after.pending == 0
    joined = hosts["k3s-node-02"].files["/etc/rancher/k3s/config.yaml"]
    assert "K10generated-at-install" in joined  # the joiners got the token read after install
    assert plan.diff(lab, hosts, phase=1).pending == 0


def test_the_plan_shows_what_a_changing_step_cannot_do(tmp_path: Path) -> None:
    lab = lab_of(tmp_path).model_copy(update={"kind": "sandbox"})
    result = plan.diff(lab, nodes(), phase=1)
    (swap,) = [
        row for row in result.rows() if row["node"] == "k3s-node-01" and row["step"] == "swap"
    ]
    assert swap["status"] == "change" and "cannot here:" in swap["detail"]
    assert any(item["step"] == "swap" for item in result.cannot()["k3s-node-01"])


@pytest.mark.parametrize(  # "1.5" plans the cluster: tests/cluster/test_gitops.py
    ("given", "key"), [(1, "1"), ("1", "1"), ("1.2", "1.2"), (" 1.3 ", "1.3"), (None, None)]
)
def test_a_plan_knows_its_phase(tmp_path: Path, given: int | str | None, key: str | None) -> None:
    result = plan.diff(lab_of(tmp_path), nodes(), phase=given)
    assert result.phase == key and result.to_dict()["phase"] == key
    assert (f"phase {key}" if key else "every phase") in repr(result) + result._repr_html_()


@pytest.mark.parametrize("given", ["one", "1.", "1.5.2", "", "-1"])
def test_a_phase_that_is_not_one_is_refused(given: str) -> None:
    with pytest.raises(ConfigError, match="expected a roadmap phase or step"):
        plan.phase_of(given)


def test_the_html_shows_one_table_and_commands_that_wrap_only_between_words(
    tmp_path: Path,
) -> None:
    shown = plan.diff(lab_of(tmp_path), nodes(), phase="1")._repr_html_()
    assert shown.count("<table") == 1  # no evidence yet: the plan table alone
    assert "word-break:keep-all" in shown and "overflow-wrap:normal" in shown
    assert "<pre>" not in shown  # a <pre> inherits the notebook's break-anywhere wrapping


def test_the_cluster_phases_named_by_plan_are_the_ones_the_cluster_layer_builds() -> None:
    from labkit import plan
    from labkit.cluster import plan as cluster_plan

    assert tuple(cluster_plan.CLUSTER_PHASES) == plan.CLUSTER_PHASES
