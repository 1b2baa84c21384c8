"""Params: shipped labs validate; every kind of mistake exits 2 naming the field; layering."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from labkit.cli import main
from labkit.errors import ConfigError, LabkitError, NotAllowed, SandboxDown
from labkit.params import address_allowed, load_lab, load_layers

REPOSITORY = Path(__file__).resolve().parent.parent
BROKEN = REPOSITORY / "tests" / "data" / "params" / "broken"

# file -> text the error must contain (the field path, or the YAML position)
CASES = {
    "wrong-type-port.yaml": "nodes.0.ssh_port: Input should be a valid integer",
    "port-out-of-range.yaml": "nodes.0.ssh_port: Input should be less than or equal to 65535",
    "unknown-key.yaml": "redis.maxmemroy: unknown key",
    "duplicate-node-name.yaml": "nodes.1.name: 'k3s-node-01' duplicates nodes.0",
    "duplicate-address.yaml": "nodes.1.address: '10.77.0.11' duplicates nodes.0",
    "bad-address.yaml": "nodes.0.address: 'not an address!' is neither an IP address nor",
    "bad-ip-octet.yaml": "nodes.0.address: '10.77.0.300' is neither",
    "bad-node-name.yaml": "nodes.0.name: 'K3S_Node_01' is not a valid hostname label",
    "inline-secret.yaml": "postgres.password: a secret is written inline",
    "secret-ref-unknown-store.yaml": "shlink.api_key.value: unknown key",
    "bad-version.yaml": "versions.k3s: 'latest' is not a version",
    "quorum-above-sentinels.yaml": "redis: sentinel_quorum 4 exceeds sentinels 3",
    "cluster-init-unknown-node.yaml": "k3s.cluster_init_node: 'k3s-node-09' is not one of",
    "bad-eviction-policy.yaml": "redis.maxmemory_policy: Input should be",
    "bad-allow-list.yaml": "allow_list.0: '10.77.0.0/33' is not a valid network",
    "missing-required.yaml": "nodes: required but missing",
    "duplicate-yaml-key.yaml": "line 4, column 3: duplicate key 'port'",
    "not-yaml.yaml": "line 3, column 1: expected ',' or ']'",
    "top-level-list.yaml": "the top level must be a mapping, got list",
    "url-with-credentials.yaml": "shlink.base_url: credentials do not belong in a URL here",
    "repo-url-with-token.yaml": "argocd.repo_url: credentials do not belong in a URL here",
    "observability-url-with-credentials.yaml": (
        "observability.prometheus_url: credentials do not belong in a URL here"
    ),
    "not-utf8.yaml": "not UTF-8 text (byte 48); save it as UTF-8 YAML",
    "loop-a.yaml": "'extends' loops back to",
    "unhashable-key.yaml": "line 3, column 1: a key must be a name or a number, not a list",
    "bad-merge.yaml": "line 3, column 7: '<<' merges a mapping or a list of mappings",
}


def test_every_broken_fixture_has_a_case() -> None:
    on_disk = {path.name for path in BROKEN.glob("*.yaml")} - {"loop-b.yaml"}
    assert on_disk == set(CASES)


def test_shipped_labs_validate(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(REPOSITORY / "params" / name) for name in ("homelab.yaml", "local.yaml")]
    assert main(["params", "validate", *files]) == 0
    out = capsys.readouterr().out
    assert "homelab.yaml: valid (lab homelab, homelab, 3 nodes)" in out
    assert "local.yaml: valid (lab sandbox, sandbox, 3 nodes)" in out


@pytest.mark.parametrize(("name", "expected"), sorted(CASES.items()))
def test_broken_file_exits_2_naming_the_field(
    name: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["params", "validate", str(BROKEN / name)]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_inline_secret_value_is_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("inline-secret.yaml", "secret-ref-unknown-store.yaml"):
        main(["params", "validate", str(BROKEN / name)])
    err = capsys.readouterr().err
    assert "hunter2-inline" not in err
    assert "abcd1234" not in err


@pytest.mark.parametrize(
    "name",
    [
        "url-with-credentials.yaml",
        "repo-url-with-token.yaml",
        "observability-url-with-credentials.yaml",
    ],
)
def test_a_credential_in_a_url_is_not_echoed(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "validate", str(BROKEN / name)]) == 2
    err = capsys.readouterr().err
    assert "pw1234" not in err
    assert "tok3nvalue" not in err


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("", True),
        ("https://github.com/someone/lab.git", True),
        ("ssh://git@github.com/someone/lab.git", True),
        ("git@github.com:someone/lab.git", True),
        ("https://token@github.com/someone/lab.git", False),
        ("https://user:token@github.com/someone/lab.git", False),
        ("ssh://git:token@github.com/someone/lab.git", False),
        ("git:token@github.com:someone/lab.git", False),
        ("ftp://github.com/someone/lab.git", False),
    ],
)
def test_repo_url_forms(url: str, allowed: bool, tmp_path: Path) -> None:
    layer = tmp_path / "lab.yaml"
    layer.write_text(
        f"extends: {REPOSITORY / 'params' / 'homelab.yaml'}\nargocd:\n  repo_url: '{url}'\n"
    )
    if allowed:
        assert load_lab(layer).argocd.repo_url == url
    else:
        with pytest.raises(ConfigError, match=r"argocd\.repo_url"):
            load_lab(layer)


def test_one_bad_file_does_not_hide_a_good_one(capsys: pytest.CaptureFixture[str]) -> None:
    good = str(REPOSITORY / "params" / "local.yaml")
    assert main(["params", "validate", str(BROKEN / "unknown-key.yaml"), good]) == 2
    assert "local.yaml: valid" in capsys.readouterr().out


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "validate", "no/such/params.yaml"]) == 2
    err = capsys.readouterr().err
    assert "no/such/params.yaml: cannot be read (No such file or directory)" in err


def test_layers_later_wins_and_nested_maps_merge(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("redis: {port: 1000, replicas: 2}\nname: base\n")
    (tmp_path / "env.yaml").write_text("extends: base.yaml\nredis: {port: 2000}\n")
    (tmp_path / "extra.yaml").write_text("name: extra\n")
    data, sources = load_layers(tmp_path / "env.yaml", tmp_path / "extra.yaml")
    assert data["redis"] == {"port": 2000, "replicas": 2}
    assert data["name"] == "extra"
    assert [p.name for p in sources] == ["base.yaml", "env.yaml", "extra.yaml"]


def test_homelab_is_the_roadmaps_lab() -> None:
    lab = load_lab(REPOSITORY / "params" / "homelab.yaml")
    # The roadmap's static addresses .242-.244 of one private /24 (written here without the
    # literal addresses: tests name no address of the owner's lab).
    assert [n.name for n in lab.nodes] == ["k3s-node-01", "k3s-node-02", "k3s-node-03"]
    addresses = [ipaddress.ip_address(n.address) for n in lab.nodes]
    assert [a.packed[-1] for a in addresses] == [242, 243, 244]
    assert all(a.is_private for a in addresses)
    assert len({a.packed[:3] for a in addresses}) == 1
    assert addresses[0].packed[:2] == bytes([192, 168])
    assert lab.versions.k3s == "v1.33.6+k3s1"
    assert lab.versions.istio == "1.24.2"
    assert lab.versions.postgresql == 18
    assert lab.k3s.disable == ["traefik"]
    assert all(n.role == "server" for n in lab.nodes)  # 3 control planes with embedded etcd
    assert lab.redis.maxmemory_policy == "allkeys-lru"
    assert lab.redis.sentinel_quorum == 2
    assert lab.observability.grafana_port == 3000
    assert lab.postgres.cluster_name == "shlink-db"
    assert lab.targets.redirect_p99_ms == 10
    assert lab.targets.rate_steps == [1000, 5000, 10000]


def test_key_files_need_not_exist_to_validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty home: homelab.yaml's ~/.ssh/id_ed25519 and ~/.ssh/known_hosts cannot exist.
    monkeypatch.setenv("HOME", str(tmp_path))
    lab = load_lab(REPOSITORY / "params" / "homelab.yaml")
    for node in lab.nodes:
        assert node.ssh_key is not None
        key = lab.path(node.ssh_key)
        assert key == tmp_path / ".ssh" / "id_ed25519"
        assert not key.exists()
    known_hosts = lab.path(lab.ssh.known_hosts)
    assert known_hosts == tmp_path / ".ssh" / "known_hosts"
    assert not known_hosts.exists()


def test_yaml_merge_keys_share_settings(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(
        f"extends: '{REPOSITORY / 'params' / 'local.yaml'}'\n"
        "nodes:\n"
        "  - &node {name: k3s-node-01, address: 10.77.0.11, ssh_user: root, ssh_port: 2201}\n"
        "  - {<<: *node, name: k3s-node-02, address: 10.77.0.12}\n"
        "  - {<<: *node, name: k3s-node-03, address: 10.77.0.13, ssh_port: 2203}\n"
    )
    lab = load_lab(tmp_path / "lab.yaml")
    assert [(n.name, n.address, n.ssh_user, n.ssh_port) for n in lab.nodes] == [
        ("k3s-node-01", "10.77.0.11", "root", 2201),
        ("k3s-node-02", "10.77.0.12", "root", 2201),
        ("k3s-node-03", "10.77.0.13", "root", 2203),
    ]


def test_yaml_merge_keys_own_keys_win_then_the_first_merged(tmp_path: Path) -> None:
    (tmp_path / "merge.yaml").write_text(
        "redis:\n  <<: [{port: 1, replicas: 1}, {port: 2, sentinels: 5}]\n  replicas: 3\n"
    )
    data, _ = load_layers(tmp_path / "merge.yaml")
    assert data["redis"] == {"port": 1, "replicas": 3, "sentinels": 5}


def test_duplicate_key_beside_a_merge_key_is_still_an_error(tmp_path: Path) -> None:
    (tmp_path / "twice.yaml").write_text("redis: {<<: {port: 1}, port: 2, port: 3}\n")
    with pytest.raises(ConfigError) as error:
        load_layers(tmp_path / "twice.yaml")
    assert error.value.problems == ["line 1, column 33: duplicate key 'port'"]


@pytest.mark.parametrize(
    ("address", "allowed", "refusal"),
    [
        ("127.0.0.1", True, None),
        # Allowed, but a sandbox address: contacted only while the sandbox's bridge carries it.
        ("10.77.0.13", True, SandboxDown),
        ("10.77.1.13", False, NotAllowed),
        ("8.8.8.8", False, NotAllowed),
        ("example.org", False, NotAllowed),
    ],
)
def test_allow_list(address: str, allowed: bool, refusal: type[LabkitError] | None) -> None:
    lab = load_lab(REPOSITORY / "params" / "local.yaml")
    assert lab.sandbox is not None
    # A bridge that does not exist: the sandbox of this lab is down, whatever runs here.
    lab = lab.model_copy(update={"sandbox": lab.sandbox.model_copy(update={"bridge": "lkt-none"})})
    assert address_allowed(address, lab.allow_list) is allowed
    if refusal is None:
        lab.require_allowed(address)
        return
    with pytest.raises(refusal) as caught:
        lab.require_allowed(address)
    if refusal is NotAllowed:
        assert f"{address} is not in lab sandbox's allow_list" in str(caught.value)
    else:
        assert "the sandbox is not running: `labkit sandbox up`" in str(caught.value)


def test_no_params_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no params file given"):
        load_lab()
