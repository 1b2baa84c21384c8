"""Typed lab descriptions: YAML loading, layering (``extends``), validation with field-level errors.

A lab is validated before any I/O. Whether files named in it exist on this
machine (SSH key, known_hosts) is a preflight check, not a validation error, so
the homelab file validates anywhere.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from labkit.errors import ConfigError, NotAllowed
from labkit.files import read_regular
from labkit.routes import require_sandbox_route
from labkit.secrets import Secret, SecretRef, resolve

__all__ = [
    "Argocd",
    "ClusterAccess",
    "K3s",
    "Lab",
    "Node",
    "Observability",
    "Postgres",
    "Redis",
    "SandboxMonitoring",
    "SandboxSettings",
    "Shlink",
    "Ssh",
    "Targets",
    "Versions",
    "address_allowed",
    "load_lab",
    "load_layers",
    "yaml_document",
]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
    re.I,
)
_VERSION = re.compile(r"^v?\d+(\.\d+){0,2}([+-][0-9A-Za-z.+-]+)?$")
_MEMORY = re.compile(r"^\d+(kb|mb|gb|b)?$", re.I)
# Keys whose value must be a reference, never the secret itself.
_REFERENCE_KEYS = {"env", "file", "kubernetes"}
_SECRET_WORDS = ("password", "token", "api_key", "apikey", "secret", "passphrase")


def _address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value) or value.replace(".", "").isdigit():
            raise ValueError(f"{_shown(value)} is neither an IP address nor a hostname") from None
    return value


def _node_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", value):
        raise ValueError(f"{_shown(value)} is not a valid hostname label (lowercase, digits, '-')")
    return value


def _version(value: str) -> str:
    if not _VERSION.match(value):
        raise ValueError(f"{_shown(value)} is not a version like 1.33.6 or v1.33.6+k3s1")
    return value


def _allow_entry(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        if "/" in value:
            raise ValueError(f"{_shown(value)} is not a valid network (like 10.0.0.0/24)") from None
        _address(value)
    return value


_CREDENTIALS_IN_URL = "credentials do not belong in a URL here; use a secret reference"


def _url_parts(value: str) -> SplitResult:
    """The URL split, refused (without echoing it) when it carries a user or password."""
    try:
        parts = urlsplit(value)
        credentials = parts.username is not None or parts.password is not None
    except ValueError:
        raise ValueError(f"{_shown(value.rpartition('@')[2])} is not a URL") from None
    if credentials:  # a token often stands where the user name would be
        raise ValueError(_CREDENTIALS_IN_URL)
    return parts


def _http_url(value: str) -> str:
    parts = _url_parts(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{_shown(value)} is not an http(s) URL with a host")
    _address(parts.hostname)
    return value


def _optional_http_url(value: str) -> str:
    """An http(s) URL, or "" for "not set"."""
    return _http_url(value) if value else value


def _repo_url(value: str) -> str:
    """A Git repository URL for ArgoCD: https or ssh, never a password or token inside it.

    ssh may name its user (``ssh://git@host/x.git``, ``git@host:x.git``): that is no secret.
    """
    if not value or "://" not in value:  # "" (not set) or scp-like user@host:path
        if value and ":" in value.partition("@")[0] and "@" in value:
            raise ValueError(_CREDENTIALS_IN_URL)  # user:password@host:path
        return value
    parts = urlsplit(value)
    if parts.scheme == "ssh" and parts.password is None:
        return value
    _url_parts(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{_shown(value)} is not an https or ssh Git URL")
    return value


Address = Annotated[str, AfterValidator(_address)]
OptionalHttpUrl = Annotated[str, AfterValidator(_optional_http_url)]
AllowEntry = Annotated[str, AfterValidator(_allow_entry)]
Port = Annotated[int, Field(ge=1, le=65535)]
Version = Annotated[str, AfterValidator(_version)]
Namespace = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
# Numbers no lab could mean: a rate beyond any load generator here, more than a day of load.
MAX_RATE = 1_000_000  # requests per second
DAY_S = 86_400
Milliseconds = Annotated[float, Field(ge=0, le=60_000)]
Microseconds = Annotated[float, Field(ge=0, le=60_000_000)]


class _Model(BaseModel):
    # Infinity and NaN are no number of seconds, requests or bytes (YAML's .inf, 1e400, .nan).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Node(_Model):
    """One machine of the lab, reached over SSH."""

    name: Annotated[str, AfterValidator(_node_name)]
    address: Address
    ssh_user: Annotated[str, Field(min_length=1, pattern=r"^[a-z_][a-z0-9_-]*$")]
    ssh_port: Port = 22
    ssh_key: Path | None = None  # None: use the SSH agent
    role: Literal["server", "agent"] = "server"


class Ssh(_Model):
    """How labkit talks SSH to the nodes."""

    known_hosts: Path
    trust_on_first_use: bool = False
    sudo: bool = True
    connect_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    command_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    use_ssh_config: bool = True


class Versions(_Model):
    """Version pins, one per component."""

    ubuntu: str = "24.04"
    k3s: Version
    argocd: Version
    pgo: Version
    postgresql: Annotated[int, Field(ge=13, le=30)]
    redis: Version
    shlink: Version
    istio: Version
    kube_prometheus_stack: Version
    eso: Version = "1.0.0"  # External Secrets Operator Helm chart (a name without "secret" in it)
    jaeger: Version = "1.58"  # jaegertracing/all-in-one image tag


class K3s(_Model):
    """K3s HA settings (phase 1.3)."""

    cluster_init_node: str
    disable: list[str] = ["traefik"]
    write_kubeconfig_mode: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] = "0644"
    kubeconfig: Path = Path("~/.kube/labkit.yaml")
    airgap_dir: Path | None = None
    wireguard: bool = False
    token: SecretRef | None = None  # None: read from the first server after install
    packages: list[str] = ["curl", "ca-certificates"]  # node prep (1.2), apt, when missing


class ClusterAccess(_Model):
    """How labkit reaches the Kubernetes API (phases 1.3-5): kubeconfig, context, timeouts."""

    kubeconfig: Path | None = None  # None: the file phase 1 saved (k3s.kubeconfig)
    context: str | None = None  # None: the kubeconfig's current-context
    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 15.0
    wait_timeout_s: Annotated[float, Field(gt=0, le=7200)] = 600.0


class Argocd(_Model):
    """ArgoCD settings (phase 1.5): the pinned install manifest, its NodePort, the GitOps repo."""

    namespace: Namespace = "argocd"
    # The one place naming the GitOps repository and the revision ArgoCD syncs from: every
    # Application that deploys a folder of manifests/ must say the same (manifests validate).
    repo_url: Annotated[str, AfterValidator(_repo_url)] = ""
    revision: Annotated[str, Field(min_length=1)] = "main"
    node_port: Annotated[int, Field(ge=30000, le=32767)] | None = None
    # A local copy of install.yaml for air-gapped labs; None: the pinned release's URL.
    install_manifest: Path | None = None
    repo_username: str = ""
    repo_password: SecretRef | None = None  # a token for a private repository


class Postgres(_Model):
    """PostgreSQL settings (phase 2.1-2.2)."""

    operator_namespace: Namespace = "postgres-operator"
    namespace: Namespace = "postgres"
    cluster_name: Namespace = "shlink-db"
    database: str = "shlink"
    user: str = "shlink"
    storage: str = "20Gi"
    backup_storage: str = "20Gi"
    host: Address = (
        "127.0.0.1"  # where labkit reaches it (sandbox: loopback; homelab: port-forward)
    )
    port: Port = 5432
    standby_port: Port | None = None
    password: SecretRef


class Redis(_Model):
    """Redis with Sentinel settings (phase 2.3)."""

    namespace: Namespace = "redis"
    master_name: str = "mymaster"
    replicas: Annotated[int, Field(ge=0, le=10)] = 2
    sentinels: Annotated[int, Field(ge=1, le=9)] = 3
    sentinel_quorum: Annotated[int, Field(ge=1, le=9)] = 2
    down_after_ms: Annotated[int, Field(ge=100, le=600_000)] = 5000
    maxmemory: str = "256mb"
    maxmemory_policy: Literal[
        "noeviction",
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] = "allkeys-lru"
    appendonly: bool = True
    host: Address = "127.0.0.1"
    port: Port = 6379
    replica_ports: list[Port] = []
    sentinel_ports: list[Port] = []
    password: SecretRef | None = None

    @field_validator("maxmemory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not _MEMORY.match(value):
            raise ValueError(f"{_shown(value)} is not a Redis memory size like 256mb")
        return value

    @model_validator(mode="after")
    def _quorum(self) -> Redis:
        if self.sentinel_quorum > self.sentinels:
            raise ValueError(
                f"sentinel_quorum {self.sentinel_quorum} exceeds sentinels {self.sentinels}: "
                "failover could never be agreed"
            )
        return self


class RateLimit(_Model):
    """A token-bucket rate limit at the ingress gateway (phase 4.2)."""

    requests: Annotated[int, Field(ge=1, le=MAX_RATE)] = 100
    per_seconds: Annotated[int, Field(ge=1, le=DAY_S)] = 1


class Shlink(_Model):
    """Shlink settings (phase 3)."""

    namespace: Namespace = "shlink"
    replicas: Annotated[int, Field(ge=1, le=50)] = 2
    base_url: Annotated[str, AfterValidator(_http_url)] = "http://127.0.0.1:8080"
    default_domain: str = "s.lab"
    redirect_cache: bool = True
    api_key: SecretRef
    workers: Annotated[int, Field(ge=1, le=64)] = 2


class Istio(_Model):
    """Istio settings (phase 4)."""

    namespace: Namespace = "istio-system"  # istiod, the ingress gateway, mesh-wide policies
    gateway_service: Namespace = "istio-ingressgateway"  # the gateway's Service (port 80)
    # The gateway's external address (its NodePort or LoadBalancer), e.g.
    # http://192.168.2.242:31080; must be in the allow-list. "": through a port-forward to
    # one gateway pod (the API's port-forward, as `kubectl port-forward` does).
    gateway_url: OptionalHttpUrl = ""
    profile: Literal["default", "demo", "minimal", "ambient"] = "default"
    mtls: Literal["STRICT", "PERMISSIVE"] = "STRICT"
    rate_limit: RateLimit = RateLimit()
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    retry_attempts: Annotated[int, Field(ge=0, le=10)] = 3
    retry_per_try_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 2.0


class Observability(_Model):
    """Observability endpoints and settings (phase 5)."""

    namespace: Namespace = "monitoring"
    grafana_port: Port = 3000
    prometheus_url: OptionalHttpUrl = ""
    grafana_url: OptionalHttpUrl = ""
    jaeger_url: OptionalHttpUrl = ""
    # Base URLs of the other phase-5 APIs (empty: not reachable from here, their checks skip).
    alertmanager_url: OptionalHttpUrl = ""
    kiali_url: OptionalHttpUrl = ""
    grafana_user: str = "admin"
    grafana_password: SecretRef | None = None


class Ladder(_Model):
    """A climbing rate ladder: ``start_rps``, times ``factor`` each step, until the targets
    break or the generator is the limit, bounded by ``max_rps``, ``max_steps`` and
    ``max_total_s`` (one scenario's steps, warm-ups included)."""

    start_rps: Annotated[float, Field(gt=0, le=MAX_RATE)] = 100.0
    factor: Annotated[float, Field(gt=1, le=100)] = 2.0
    max_rps: Annotated[float, Field(gt=0, le=MAX_RATE)] = 10_000.0
    max_steps: Annotated[int, Field(ge=1, le=20)] = 6
    max_total_s: Annotated[float, Field(gt=0, le=DAY_S)] = 180.0

    def rates(self) -> list[float]:
        """Every rate the ladder may climb to, in order (it stops earlier when targets break)."""
        rates: list[float] = []
        rate = self.start_rps
        while rate <= self.max_rps and len(rates) < self.max_steps:
            rates.append(round(rate, 1))
            rate *= self.factor
        return rates


class Targets(_Model):
    """The ADR's performance targets (phase 6)."""

    redirect_p99_ms: Annotated[float, Field(gt=0, le=60_000)] = 10.0
    cache_hit_ratio: Annotated[float, Field(gt=0, le=1)] = 0.95
    redis_latency_us: tuple[Microseconds, Microseconds] = (200.0, 500.0)
    postgres_write_p99_ms: tuple[Milliseconds, Milliseconds] = (5.0, 10.0)
    rate_steps: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_RATE)]], Field(min_length=1, max_length=20)
    ] = [1000, 5000, 10000]
    # When set, the scenarios climb this ladder (until targets break) instead of rate_steps.
    ladder: Ladder | None = None
    warmup_s: Annotated[float, Field(ge=0, le=3600)] = 5.0
    step_duration_s: Annotated[float, Field(gt=0, le=DAY_S)] = 30.0

    @field_validator("redis_latency_us", "postgres_write_p99_ms")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"range {list(value)} has its low end above its high end")
        return value


class SandboxMonitoring(_Model):
    """The sandbox's own Prometheus, Alertmanager and exporters (loopback ports, intervals)."""

    enabled: bool = True
    prometheus_port: Port = 19090
    alertmanager_port: Port = 19093
    redis_exporter_port: Port = 19121
    postgres_exporter_ports: tuple[Port, Port] = (19187, 19188)  # primary, standby
    node_exporter_port: Port = 9100  # inside each node's namespace, on the node's address
    scrape_interval_s: Annotated[float, Field(ge=0.5, le=300)] = 5.0
    evaluation_interval_s: Annotated[float, Field(ge=0.5, le=300)] = 5.0


class Drills(_Model):
    """Failure drills (phase 7.3): the steady load they run under and when the fault comes."""

    rate_rps: Annotated[float, Field(gt=0, le=MAX_RATE)] = 500.0  # the mixed scenario's rate
    duration_s: Annotated[float, Field(gt=0, le=3600)] = 12.0  # measured, after the warm-up
    warmup_s: Annotated[float, Field(ge=0, le=3600)] = 1.0
    fault_at_s: Annotated[float, Field(ge=0, le=3600)] = 3.0  # into the measured part
    cut_s: Annotated[float, Field(gt=0, le=3600)] = 3.0  # node-cut: how long the link stays down

    @model_validator(mode="after")
    def _fault_inside(self) -> Drills:
        if self.fault_at_s >= self.duration_s:
            raise ValueError(
                f"fault_at_s {self.fault_at_s} is not before the end of the load "
                f"(duration_s {self.duration_s}); the drill would measure no recovery"
            )
        return self


class SandboxSettings(_Model):
    """Where and how the sandbox runs its miniature lab on this machine."""

    state_dir: Path = Path("~/.local/state/labkit/sandbox")
    bridge: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,15}$")] = "labkit-br0"
    gateway: Address = "10.77.0.1"
    prefix_length: Annotated[int, Field(ge=8, le=30)] = 24
    startup_timeout_s: Annotated[float, Field(gt=0, le=600)] = 60.0
    monitoring: SandboxMonitoring = SandboxMonitoring()


class Lab(_Model):
    """A whole lab: nodes, versions, components, targets, and what labkit may contact."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")]
    kind: Literal["homelab", "sandbox"]
    description: str = ""
    internet: bool = True
    nodes: Annotated[list[Node], Field(min_length=1)]
    ssh: Ssh
    versions: Versions
    k3s: K3s
    cluster: ClusterAccess = ClusterAccess()
    argocd: Argocd = Argocd()
    postgres: Postgres
    redis: Redis = Redis()
    shlink: Shlink
    istio: Istio = Istio()
    observability: Observability = Observability()
    targets: Targets = Targets()
    drills: Drills = Drills()
    allow_list: Annotated[list[AllowEntry], Field(min_length=1)]
    sandbox: SandboxSettings | None = None
    source: list[Path] = []  # every file this lab was read from, in layer order
    files: list[Path] = []  # the files it was loaded with (each may extend others)

    @model_validator(mode="after")
    def _consistent(self) -> Lab:
        problems: list[str] = []
        for attribute in ("name", "address"):
            seen: dict[str, int] = {}
            for index, node in enumerate(self.nodes):
                key = getattr(node, attribute)
                if key in seen:
                    problems.append(
                        f"nodes.{index}.{attribute}: {_shown(key)} duplicates nodes.{seen[key]}"
                    )
                seen.setdefault(key, index)
        names = [node.name for node in self.nodes]
        if self.k3s.cluster_init_node not in names:
            problems.append(
                f"k3s.cluster_init_node: {_shown(self.k3s.cluster_init_node)} is not one of {names}"
            )
        if self.kind == "sandbox" and self.sandbox is None:
            problems.append("sandbox: a sandbox lab needs a 'sandbox' section")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def secret(self, ref: SecretRef) -> Secret:
        """Resolve ``ref``; a file path is read relative to the params file, ``~`` expanded."""
        return resolve(ref, self.base_dir)

    def secret_refs(self) -> dict[str, SecretRef]:
        """Every secret reference in this lab, by field path (``postgres.password``...)."""
        found: dict[str, SecretRef] = {}

        def walk(value: object, path: str) -> None:
            if isinstance(value, SecretRef):
                found[path] = value
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name), f"{path}.{name}" if path else name)
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    walk(item, f"{path}.{index}")

        walk(self, "")
        return found

    def node(self, name: str) -> Node:
        """The node called ``name``; a ConfigError lists the known names otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ConfigError(f"lab {self.name} has no node {name!r}; nodes: {self.node_names}")

    @property
    def node_names(self) -> list[str]:
        """Node names in params order."""
        return [node.name for node in self.nodes]

    @property
    def base_dir(self) -> Path:
        """Directory of the last params file; relative paths in params resolve against it."""
        return self.source[-1].parent if self.source else Path.cwd()

    def path(self, value: Path) -> Path:
        """Resolve a path from params: ``~`` expanded, relative to the params file."""
        value = value.expanduser()
        return value if value.is_absolute() else (self.base_dir / value).resolve()

    def require_allowed(self, address: str) -> None:
        """Raise NotAllowed unless ``address`` is in this lab's allow-list.

        A sandbox address (in the sandbox's node subnet) must also be carried by the
        sandbox's bridge right now, or SandboxDown: with the sandbox down, this machine
        would route it out through its default gateway. Call this before every connection.
        """
        if not address_allowed(address, self.allow_list):
            raise NotAllowed(
                f"{address} is not in lab {self.name}'s allow_list {self.allow_list}; "
                "labkit contacts only addresses the params allow (add it there if it is yours)"
            )
        if self.sandbox is not None:
            files = " ".join(f"--params {path}" for path in self.files)
            default = [path.name for path in self.files] in ([], ["local.yaml"])
            require_sandbox_route(self.sandbox, address, "" if default else files)


def address_allowed(address: str, allow_list: list[str]) -> bool:
    """True when ``address`` (IP or hostname) matches an allow-list entry (IP, network or name)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address.lower() in {entry.lower() for entry in allow_list}
    for entry in allow_list:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


# Bounds of a params file (README "Params"): a lab needs a few KB, a few hundred YAML nodes
# and five levels; these leave plenty of room and keep a hostile file from taking the machine.
MAX_BYTES = 1024 * 1024  # the file as read
MAX_DEPTH = 64  # nesting of mappings and lists, aliases followed
MAX_NODES = 100_000  # YAML nodes once every alias is expanded (a "billion laughs" is refused)
MAX_LAYERS = 16  # files in one extends chain


class _OverBound(yaml.composer.ComposerError):
    """A document over one of the bounds above (not a YAML mistake: a file too big or deep)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of silently keeping the last.

    It also bounds what a document may cost before anything is built from it: nesting
    deeper than MAX_DEPTH is refused while composing (before Python's recursion limit), and
    a document whose aliases expand past MAX_NODES nodes is refused before construction.
    A value the constructor cannot build (a 5,000-digit integer, the 13th month) is a
    YAML error at its line, not a Python exception.
    """

    _depth = 0
    _composed = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self._composed += 1  # an alias counts too: the expanded document holds it again
        try:
            over = None
            if self._composed > MAX_NODES:
                over = f"holds more than {MAX_NODES:,} YAML nodes"
            elif self._depth > MAX_DEPTH:
                over = f"nested deeper than {MAX_DEPTH} levels"
            if over:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _OverBound(None, None, f"{over}, the limit for a params file", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _expanded(node)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            reason = str(exc).split(";")[0]  # not Python's advice to raise its own limit
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{_shown(node.value, 40)} is not a valid {_tag(node)}: {reason}",
                node.start_mark,
            ) from None


def _tag(node: yaml.Node) -> str:
    return str(node.tag).rsplit(":", 1)[-1]


def _expanded(root: yaml.Node) -> None:
    """Refuse a node graph that is cyclic, or deeper or larger than the bounds once expanded.

    An alias is the very node its anchor names, so the graph is small even when the tree
    it stands for is huge; sizes are counted once per node and summed as the tree would be.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, height) of its expanded tree

    def too_deep(node: yaml.Node) -> _OverBound:
        text = f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded"
        return _OverBound(None, None, f"{text}, the limit for a params file", node.start_mark)

    open_nodes: set[int] = set()

    def visit(node: yaml.Node, level: int) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is None:
            if id(node) in open_nodes:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "an alias refers to a node that contains it (a structure without end)",
                    node.start_mark,
                )
            if level > MAX_DEPTH:
                raise too_deep(node)
            open_nodes.add(id(node))
            children: list[yaml.Node] = []
            if isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            count, height = 1, 1
            for child in children:
                child_count, child_height = visit(child, level + 1)
                count += child_count
                height = max(height, child_height + 1)
                if count > MAX_NODES:
                    break
            open_nodes.discard(id(node))
            known = sizes[id(node)] = (count, height)
        if level + known[1] - 1 > MAX_DEPTH:
            raise too_deep(node)
        return known

    count, _ = visit(root, 1)
    if count > MAX_NODES:
        raise _OverBound(
            None,
            None,
            f"expands to more than {MAX_NODES:,} YAML nodes through its aliases ('*name'), "
            "the limit for a params file",
            root.start_mark,
        )


_MERGE_TAG = "tag:yaml.org,2002:merge"
_KIND = {"list": "list", "dict": "mapping", "set": "set"}


def _merged_keys(loader: yaml.SafeLoader, value_node: yaml.Node) -> dict[Any, Any]:
    """The keys a ``<<:`` entry brings in; of several mappings, the first to name a key wins."""
    sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
    inherited: dict[Any, Any] = {}
    for source in sources:
        mapping = loader.construct_object(source, deep=True)
        if not isinstance(mapping, dict):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "'<<' merges a mapping or a list of mappings (like '<<: *defaults'), "
                f"not a {_KIND.get(type(mapping).__name__, 'scalar')}",
                source.start_mark,
            )
        for key, value in mapping.items():
            inherited.setdefault(key, value)
    return inherited


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    # Merge keys (YAML 1.1 '<<: *anchor') are expanded here, without mutating the shared
    # anchor's node as SafeLoader.flatten_mapping does; the mapping's own keys win.
    mapping: dict[Any, Any] = {}
    inherited: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            for key, value in _merged_keys(loader, value_node).items():
                inherited.setdefault(key, value)
            continue
        key = loader.construct_object(key_node)
        try:
            hash(key)
        except TypeError:
            kind = _KIND.get(type(key).__name__, type(key).__name__)
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a key must be a name or a number, not a {kind}; write a plain name "
                "(quote it if it must contain brackets or braces)",
                key_node.start_mark,
            ) from None
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {_shown(key)}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return {**inherited, **mapping} if inherited else mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_bytes(path: Path, name: str) -> bytes:
    """The file's bytes, if it is a regular file of at most MAX_BYTES (read no further)."""
    return read_regular(
        path,
        name,
        kind="a params file",
        limit=MAX_BYTES,
        hint="name a .yaml file of a few KB, on the command line or in 'extends'",
    )


def _unfit_text(data: Any, where: str = "") -> str | None:
    """The first field whose key or text holds a NUL or a lone surrogate (nothing can store it)."""
    if isinstance(data, str):
        if "\x00" in data:
            return f"{where or 'the document'}: contains a NUL character (\\0)"
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return (
                f"{where or 'the document'}: contains a lone surrogate (\\ud800-\\udfff), not text"
            )
        return None
    items: list[tuple[Any, Any]] = []
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = list(enumerate(data))
    for key, value in items:
        name = f"{where}.{key}" if where else str(key)
        found = _unfit_text(key, name) if isinstance(key, str) else None
        found = found or _unfit_text(value, name)
        if found:
            return found
    return None


def yaml_document(text: str) -> Any:
    """One YAML document, safely, within the bounds above and with unique keys.

    Raises yaml.YAMLError (a bound exceeded included); for any YAML a user hands labkit.
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass


def _read(path: Path, via: Path | None = None) -> dict[str, Any]:
    """One params file as a mapping; ``via`` is the file whose ``extends`` names it."""
    name = f"{path} (named by 'extends' in {via})" if via else str(path)
    raw = _read_bytes(path, name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{name}: not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML"
        ) from exc
    try:
        data = yaml_document(text)
    except yaml.reader.ReaderError as exc:  # a control character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(
            f"{name}: not valid YAML",
            [f"line {line}, column {column}: character U+{code:04X} is not allowed in YAML text"],
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        verdict = (
            "over a bound of params files" if isinstance(exc, _OverBound) else "not valid YAML"
        )
        raise ConfigError(f"{name}: {verdict}", [f"{where}{problem}"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: the top level must be a mapping, got {type(data).__name__}")
    unfit = _unfit_text(data)
    if unfit:
        raise ConfigError(f"{name}: {unfit}")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        # A secret reference is replaced whole: {env: X} over {file: Y} must not become both.
        is_reference = isinstance(value, dict) and value and set(value) <= _REFERENCE_KEYS
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not is_reference:
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_layers(*paths: Path | str) -> tuple[dict[str, Any], list[Path]]:
    """Read params files in order (each may ``extends:`` another), later values win."""
    merged: dict[str, Any] = {}
    sources: list[Path] = []
    for raw in paths:
        path = Path(raw)
        chain: list[tuple[Path, dict[str, Any]]] = []
        current: Path | None = path
        while current is not None:
            if any(current.resolve() == seen.resolve() for seen, _ in chain):
                raise ConfigError(f"{path}: 'extends' loops back to {current}")
            if len(chain) == MAX_LAYERS:
                raise ConfigError(
                    f"{path}: its 'extends' chain is longer than {MAX_LAYERS} files, the limit "
                    f"for params (the last read: {current})"
                )
            data = _read(current, chain[-1][0] if chain else None)
            chain.append((current, data))
            parent = data.pop("extends", None)
            if parent is not None and not isinstance(parent, str):
                raise ConfigError(f"{current}: extends: expected a file name, got {_shown(parent)}")
            current = (current.parent / parent) if parent else None
        for source, data in reversed(chain):
            merged = _merge(merged, data)
            sources.append(source)
    return merged, sources


def _inline_secrets(data: Any, path: str = "") -> list[str]:
    """Field paths where a secret-looking key holds a plain value instead of a reference."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if any(word in str(key).lower() for word in _SECRET_WORDS) and isinstance(
                value, str | int | float
            ):
                found.append(
                    f"{_field(where)}: a secret is written inline; reference it instead, "
                    "e.g. {env: VAR_NAME} or {file: path/to/file}"
                )
            else:
                found.extend(_inline_secrets(value, where))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found.extend(_inline_secrets(item, f"{path}.{index}"))
    return found


def _field(where: str) -> str:
    """A field path for a message, cut when a key of the file is itself a wall of text."""
    return where if len(where) <= 120 else f"{where[:100]}... ({len(where):,} characters)"


def _shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: a 100 KB string is named, not printed."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print (Python refuses beyond 4,300 digits)
        return f"<a number of more than {sys.get_int_max_str_digits():,} digits>"
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text):,} characters)"


def _format(error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        where = _field(where)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and indentation)"
        elif item["type"] == "missing":
            message = "required but missing"
        seen = item.get("input")
        secret_path = any(word in where.lower() for word in _SECRET_WORDS)
        secret_path = secret_path or _CREDENTIALS_IN_URL in message  # the URL holds one
        if item["type"] != "missing" and not isinstance(seen, dict | list) and not secret_path:
            message += f" (seen: {_shown(seen)})"
        if not where:  # model-level problems already name their fields, several per message
            problems.extend(part.strip() for part in message.split("; "))
        else:
            problems.append(f"{where}: {message}")
    return problems


def load_lab(*paths: Path | str) -> Lab:
    """Load, layer and validate params files into a Lab; a ConfigError lists every problem."""
    if not paths:
        raise ConfigError("no params file given; try params/local.yaml")
    data, sources = load_layers(*paths)
    names = ", ".join(str(path) for path in paths)
    problems = _inline_secrets(data)
    try:
        lab = Lab.model_validate(
            {
                **data,
                "source": [str(source) for source in sources],
                "files": [str(path) for path in paths],
            }
        )
    except ValidationError as exc:
        flagged = {problem.split(":")[0] for problem in problems}
        problems += [p for p in _format(exc) if p.split(":")[0] not in flagged]
        raise ConfigError(f"{names}: {len(problems)} problem(s)", problems) from None
    if problems:
        raise ConfigError(f"{names}: {len(problems)} problem(s)", problems)
    return lab
