"""The roadmap's validation checklists, item by item: id, the roadmap's own words, what it needs.

Generated once from ROADMAP.md (the duplicated "Step 2.2" heading for Redis is step 2.3, as the
roadmap's own status tracker numbers it). Phase 0 is labkit's preflight, not a roadmap phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ITEMS", "STEPS", "Item", "Needs", "item", "items_for"]

# "metrics": a Prometheus (and Alertmanager) of the lab's: the sandbox runs its own.
Needs = Literal["params", "local", "ssh", "cluster", "data", "load", "workstation", "metrics"]


@dataclass(frozen=True)
class Item:
    """One checkbox: ``1.3.2`` is phase 1, step 3, item 2."""

    id: str
    title: str
    needs: Needs

    @property
    def step(self) -> str:
        """``1.3`` for ``1.3.2``."""
        return self.id.rsplit(".", 1)[0]

    @property
    def phase(self) -> int:
        """``1`` for ``1.3.2``."""
        return int(self.id.split(".", 1)[0])


STEPS: dict[str, str] = {
    "0.1": "Preflight",
    "1.1": "Proxmox VM Preparation",
    "1.2": "System Preparation",
    "1.3": "K3s Cluster Installation",
    "1.4": "Storage and Networking Validation",
    "1.5": "ArgoCD Installation (GitOps Foundation)",
    "2.1": "PostgreSQL Operator Installation",
    "2.2": "PostgreSQL Cluster Deployment",
    "2.3": "Redis Cluster Deployment",
    "3.1": "Shlink Configuration",
    "3.2": "Shlink Deployment",
    "4.1": "Istio Installation",
    "4.2": "Istio Traffic Management",
    "4.3": "Istio mTLS and Security",
    "5.1": "Prometheus and Grafana",
    "5.2": "Distributed Tracing (Jaeger)",
    "6.1": "Load Testing Setup",
    "6.2": "Performance Measurement",
    "7.1": "Update ADR with Real Data",
    "7.2": "Create Runbooks",
    "7.3": "Prepare Interview Narratives",
}

ITEMS: tuple[Item, ...] = (
    Item("0.1.1", "Params file is valid", "params"),
    Item("0.1.2", "SSH key file present for every node", "local"),
    Item("0.1.3", "known_hosts holds the nodes' host keys", "local"),
    Item("0.1.4", "Version pins are compatible with each other", "params"),
    Item("0.1.5", "Every node address is in the allow-list", "params"),
    Item("0.1.6", "Secret references resolve on this machine", "local"),
    Item("1.1.1", "All 3 VMs boot successfully", "ssh"),
    Item("1.1.2", "Can SSH into each VM from your workstation", "ssh"),
    Item("1.1.3", "Each VM has static IP configured", "ssh"),
    Item("1.1.4", "Hostnames are set correctly (`hostname` command shows expected name)", "ssh"),
    Item("1.1.5", "VMs can ping each other by IP address", "ssh"),
    Item("1.1.6", "VMs can reach internet (test: `ping 8.8.8.8`)", "ssh"),
    Item("1.1.7", "DNS resolution works (test: `ping google.com`)", "ssh"),
    Item("1.2.1", "System packages are up to date", "ssh"),
    Item("1.2.2", "Swap is disabled (`free -h` shows 0 swap)", "ssh"),
    Item("1.2.3", "Kernel modules loaded correctly", "ssh"),
    Item("1.2.4", "Firewall allows K3s ports (6443, 8472, 10250, etc.)", "ssh"),
    Item("1.2.5", "Time is synchronized across all nodes (`timedatectl` shows synced)", "ssh"),
    Item("1.2.6", "No conflicting services running on K3s ports", "ssh"),
    Item(
        "1.3.1", "K3s service running on all nodes (`systemctl status k3s` or `k3s-agent`)", "ssh"
    ),
    Item("1.3.2", "kubectl works from control plane: `kubectl get nodes`", "cluster"),
    Item("1.3.3", "All nodes show as Ready state", "cluster"),
    Item("1.3.4", "Default namespace exists: `kubectl get namespaces`", "cluster"),
    Item("1.3.5", "Can create test pod: `kubectl run nginx --image=nginx`", "cluster"),
    Item("1.3.6", "Test pod starts successfully", "cluster"),
    Item("1.3.7", "Can access pod: `kubectl exec -it nginx -- curl localhost`", "cluster"),
    Item("1.3.8", "Clean up test pod: `kubectl delete pod nginx`", "cluster"),
    Item("1.4.1", "Storage class exists: `kubectl get storageclass`", "cluster"),
    Item("1.4.2", "Can create PVC: Test with simple StatefulSet", "cluster"),
    Item("1.4.3", "Pod-to-pod networking works across nodes", "cluster"),
    Item(
        "1.4.4", "CoreDNS is running: `kubectl get pods -n kube-system | grep coredns`", "cluster"
    ),
    Item("1.4.5", "DNS works: Pod can resolve `kubernetes.default.svc.cluster.local`", "cluster"),
    Item("1.4.6", "Traefik disabled (no conflicts with future Istio ingress)", "cluster"),
    Item("1.5.1", "All ArgoCD pods running: `kubectl get pods -n argocd`", "cluster"),
    Item(
        "1.5.2", "argocd-server, argocd-repo-server, argocd-application-controller Ready", "cluster"
    ),
    Item("1.5.3", "Can access UI via browser: `https://192.168.2.242:<nodeport>`", "cluster"),
    Item("1.5.4", "ArgoCD CLI installed on workstation: `argocd version`", "workstation"),
    Item("1.5.5", "Can login via CLI: `argocd login <server>:<port>`", "cluster"),
    Item("1.5.6", "Repository connection tested", "cluster"),
    Item("2.1.1", "Operator deployed via ArgoCD Application", "cluster"),
    Item("2.1.2", 'Application shows "Synced" and "Healthy" in ArgoCD UI', "cluster"),
    Item("2.1.3", "Operator pod running: `kubectl get pods -n postgres-operator`", "cluster"),
    Item("2.1.4", "CRDs installed: `kubectl get crd | grep postgres`", "cluster"),
    Item("2.1.5", "Operator logs show no errors", "cluster"),
    Item("2.2.1", "ArgoCD Application created and synced", "cluster"),
    Item("2.2.2", "PostgreSQL pods running: `kubectl get pods -n postgres`", "cluster"),
    Item("2.2.3", "Pods: shlink-db-instance1-xxxx, shlink-db-repo-host-x", "cluster"),
    Item("2.2.4", "PVCs bound: `kubectl get pvc -n postgres`", "cluster"),
    Item(
        "2.2.5",
        "Can connect: `kubectl exec -it shlink-db-instance1-xxxx -n postgres -- psql -U shlink shlink`",
        "data",
    ),
    Item("2.2.6", "Database and user auto-created by operator", "data"),
    Item(
        "2.2.7",
        "Credentials secret exists: `kubectl get secret -n postgres | grep shlink-db`",
        "data",
    ),
    Item("2.3.1", "Redis pod(s) running and Ready", "data"),
    Item("2.3.2", "Can connect: `kubectl exec -it <pod> -- redis-cli ping` returns PONG", "data"),
    Item("2.3.3", "Can write data: `SET test_key test_value`", "data"),
    Item("2.3.4", "Can read data: `GET test_key` returns `test_value`", "data"),
    Item("2.3.5", "Persistence works (restart pod, verify key exists)", "data"),
    Item(
        "2.3.6", "Memory limit enforced: `kubectl exec -it <pod> -- redis-cli INFO memory`", "data"
    ),
    Item("2.3.7", "Eviction policy configured: `CONFIG GET maxmemory-policy`", "data"),
    Item("3.1.1", "ConfigMap created with app configuration", "cluster"),
    Item("3.1.2", "Secret created with database credentials and API keys", "cluster"),
    Item("3.1.3", "Connection strings correctly reference Postgres and Redis services", "cluster"),
    Item("3.1.4", "Configuration validated against Shlink docs", "cluster"),
    Item("3.2.1", "Shlink pods start successfully", "cluster"),
    Item("3.2.2", "Logs show successful database connection", "cluster"),
    Item("3.2.3", "Logs show successful Redis connection", "cluster"),
    Item("3.2.4", "Health check endpoint responds: `/rest/health`", "data"),
    Item("3.2.5", "Can create test short URL via API", "data"),
    Item("3.2.6", "Can retrieve short URL from API", "data"),
    Item("3.2.7", "URL resolves and redirects correctly", "data"),
    Item("3.2.8", "Redis cache is being populated (check keys in Redis)", "data"),
    Item("4.1.1", "Istio control plane running: `kubectl get pods -n istio-system`", "cluster"),
    Item("4.1.2", "Istiod is healthy", "cluster"),
    Item("4.1.3", "Ingress gateway pod running", "cluster"),
    Item(
        "4.1.4",
        "Sidecar injection enabled: `kubectl get namespace shlink -o yaml` shows label",
        "cluster",
    ),
    Item("4.1.5", "Shlink pods have 2 containers (app + istio-proxy)", "cluster"),
    Item("4.1.6", "Can still access Shlink API (test previous functionality)", "cluster"),
    Item("4.2.1", "Gateway created and listener active", "cluster"),
    Item("4.2.2", "VirtualService routes traffic to Shlink service", "cluster"),
    Item("4.2.3", "Can access Shlink via Istio ingress gateway", "cluster"),
    Item("4.2.4", "Rate limiting works (test with high request volume)", "cluster"),
    Item("4.2.5", "Timeouts configured: Test with slow backend", "cluster"),
    Item("4.2.6", "Retries work: Test with intermittent failures", "cluster"),
    Item("4.3.1", "mTLS enabled: `istioctl authn tls-check <pod>`", "cluster"),
    Item("4.3.2", "Traffic between pods is encrypted", "cluster"),
    Item("4.3.3", "Authorization policies enforced (test unauthorized access fails)", "cluster"),
    Item("4.3.4", "Shlink can still access Redis and Postgres", "cluster"),
    Item("4.3.5", "External traffic to ingress still works", "cluster"),
    Item("5.1.1", "Prometheus scraping all targets successfully", "metrics"),
    Item("5.1.2", "Grafana accessible via browser", "cluster"),
    Item("5.1.3", "Istio dashboards showing traffic", "cluster"),
    Item("5.1.4", "Can see request rate, error rate, latency for Shlink", "metrics"),
    Item("5.1.5", "Redis and Postgres metrics visible", "metrics"),
    Item("5.1.6", "Alerts configured for critical thresholds", "metrics"),
    Item("5.2.1", "Jaeger UI accessible", "cluster"),
    Item("5.2.2", "Traces appear in Jaeger for Shlink requests", "cluster"),
    Item("5.2.3", "Can see full request path: Ingress → Shlink → Redis/Postgres", "cluster"),
    Item("5.2.4", "Latency breakdown visible per service", "cluster"),
    Item("5.2.5", "Can identify slow queries or cache misses in traces", "cluster"),
    Item("6.1.1", "Load testing tool installed and working", "load"),
    Item("6.1.2", "Test scripts created for all scenarios", "load"),
    Item("6.1.3", "Baseline performance recorded with no load", "load"),
    Item("6.1.4", "Can generate sustained load (1K, 5K, 10K RPS)", "load"),
    Item("6.2.1", "Metrics collected for all scenarios", "load"),
    Item("6.2.2", "Performance targets met or gaps documented", "load"),
    Item("6.2.3", "Cache hit ratio measured and optimized", "load"),
    Item("6.2.4", "Bottlenecks identified (CPU, memory, network, disk I/O)", "load"),
    Item("6.2.5", "Istio overhead quantified (compare with/without mesh)", "cluster"),
)

_BY_ID = {entry.id: entry for entry in ITEMS}


def item(item_id: str) -> Item:
    """The registry entry for ``item_id``; KeyError names the id when unknown."""
    try:
        return _BY_ID[item_id]
    except KeyError:
        raise KeyError(f"no roadmap item {item_id!r}") from None


def items_for(phase: int | None = None) -> list[Item]:
    """Registry entries of one phase (all when ``phase`` is None), in roadmap order."""
    return [entry for entry in ITEMS if phase is None or entry.phase == phase]
