"""A real Kubernetes control plane for the lab and the tests: etcd, kube-apiserver, kube-controller-manager.

The engines built from ``engines/`` (Kubernetes 1.34, etcd 3.6) run as plain processes under a
private directory, as kubeadm's static pods would run them: the API server serves TLS with a
certificate of its own CA, authenticates clients by certificate, authorizes with RBAC, and signs
service-account tokens with a key of its own; the controller manager runs the usual controllers
(namespace deletion, garbage collection, the disruption controller that keeps a
PodDisruptionBudget's status, service accounts) under its own identity. Two deliberate changes for
Nodes without kubelets: the node-lifecycle controller is off (it would mark every Node NotReady
and taint it unreachable, since no kubelet renews its lease), and the endpoint reconciler is off
(nothing runs in the cluster that needs the `kubernetes` Service's endpoints).

Where it runs: in the lab, inside the run's network namespace on the bridge address (the
kubeconfig's context is the lab stack's ``kubernetes.context``); in the tests, on loopback with
free ports, one context per site. Harness code: the product never imports it.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import yaml

from ..engines.locate import Engines
from ..errors import OperationError
from . import pki
from .proc import alive, port_open, spawn, wait
from .proc import stop as stop_pids
from .rgw import free_port

_STATE = "control-plane.json"
_ORDER = ("kube-controller-manager", "kube-apiserver", "etcd")  # the order they stop in
ADMIN = "aifactory-admin"
CLUSTER = "aifactory-lab"


@dataclass(frozen=True)
class ControlPlane:
    directory: Path
    server: str
    kubeconfig: Path
    contexts: tuple[str, ...]
    pids: dict[str, int]

    def client(self, context: str | None = None) -> Any:
        """A kubernetes.client.ApiClient on ``context`` (default: the first)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig), context=context or self.contexts[0])


def _kubeconfig(path: Path, server: str, ca: Path, user: pki.Pair, contexts: Sequence[str]) -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [
            {"name": ADMIN, "user": {"client-certificate-data": b64(user.cert), "client-key-data": b64(user.key)}}
        ],
        "contexts": [{"name": c, "context": {"cluster": CLUSTER, "user": ADMIN}} for c in contexts],
        "current-context": contexts[0],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)


def _save(directory: Path, pids: dict[str, int], server: str, contexts: Sequence[str]) -> None:
    (directory / _STATE).write_text(json.dumps({"pids": pids, "server": server, "contexts": list(contexts)}))


def _ready(server: str, ca: Path, admin: pki.Pair) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(admin.cert), str(admin.key))
    try:
        with urllib.request.urlopen(f"{server}/readyz", context=ctx, timeout=3) as resp:  # noqa: S310 - https only
            return resp.status == 200
    except OSError:
        return False


def start(
    directory: Path,
    engines: Engines,
    *,
    contexts: Sequence[str],
    address: str = "127.0.0.1",
    port: int | None = None,
    service_cidr: str = "10.0.0.0/24",
    audit: bool = False,
    say: Callable[[str], None] = lambda _m: None,
) -> ControlPlane:
    """A fresh control plane in ``directory`` (emptied first); its API server on https://address:port.

    ``audit`` keeps the API server's audit log of every write (``audit_events``): what the tests
    read to prove that an object reached the API server and what it answered.
    """
    stop(directory)
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "log").mkdir(parents=True)
    t0 = time.monotonic()
    ca = pki.Authority(directory / "pki")
    first_service_ip = str(next(ip_network(service_cidr).hosts()))
    names = [address, "127.0.0.1", "localhost", first_service_ip, "kubernetes", "kubernetes.default"]
    names += ["kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    serving = ca.issue("apiserver", "kube-apiserver", server_names=list(dict.fromkeys(names)))
    admin = ca.issue("admin", ADMIN, org="system:masters")
    kcm = ca.issue("controller-manager", "system:kube-controller-manager")
    sa = pki.signing_key(directory / "pki")
    etcd_port, peer_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    api_port = port or free_port(address)
    server = f"https://{address}:{api_port}"
    kubeconfig = directory / "kubeconfig"
    _kubeconfig(kubeconfig, server, ca.pair.cert, admin, contexts)
    _kubeconfig(directory / "controller-manager.kubeconfig", server, ca.pair.cert, kcm, ["kcm"])
    log = directory / "log"
    pids: dict[str, int] = {}
    try:
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        pids["etcd"] = spawn(
            [
                engines.exe("etcd"),
                "--name=lab",
                f"--data-dir={directory / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=lab={peer_url}",
                # A throwaway store on a shared disk: no fsync (etcd's own flag for tests).
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            log / "etcd.log",
        )
        _save(directory, pids, server, contexts)
        wait("etcd", lambda: port_open("127.0.0.1", etcd_port), 60, pids["etcd"], log / "etcd.log")
        pids["kube-apiserver"] = spawn(
            [
                engines.exe("kube", "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={address}",
                f"--advertise-address={address}",
                f"--secure-port={api_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.pair.cert}",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={service_cidr}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                f"--cert-dir={directory / 'pki'}",
                *(_audit_flags(directory) if audit else []),
            ],
            log / "kube-apiserver.log",
        )
        _save(directory, pids, server, contexts)
        wait(
            f"kube-apiserver on {server}",
            lambda: _ready(server, ca.pair.cert, admin),
            180,
            pids["kube-apiserver"],
            log / "kube-apiserver.log",
        )
        pids["kube-controller-manager"] = spawn(
            [
                engines.exe("kube", "kube-controller-manager"),
                f"--kubeconfig={directory / 'controller-manager.kubeconfig'}",
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={ca.pair.cert}",
                f"--cluster-signing-cert-file={ca.pair.cert}",
                f"--cluster-signing-key-file={ca.pair.key}",
                "--use-service-account-credentials=true",
                # No kubelet renews a Node's lease here: this controller would taint every Node.
                "--controllers=*,-node-lifecycle-controller",
                "--leader-elect=false",
                "--secure-port=0",
            ],
            log / "kube-controller-manager.log",
        )
        _save(directory, pids, server, contexts)
        cp = ControlPlane(directory, server, kubeconfig, tuple(contexts), pids)
        _wait_for_controllers(cp, log / "kube-controller-manager.log")
    except BaseException:
        stop(directory)
        raise
    took = time.monotonic() - t0
    say(f"control plane {server} (etcd, kube-apiserver, kube-controller-manager) up in {took:.1f} s")
    return cp


_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "verbs": ["create", "update", "patch", "delete"]}, {"level": "None"}],
}


def _audit_flags(directory: Path) -> list[str]:
    policy = directory / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(_AUDIT_POLICY))
    return [f"--audit-policy-file={policy}", f"--audit-log-path={directory / 'log' / 'audit.log'}"]


def audit_events(cp: ControlPlane) -> list[dict[str, Any]]:
    """The API server's audit events so far (writes only), oldest first."""
    path = cp.directory / "log" / "audit.log"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for_controllers(cp: ControlPlane, log: Path) -> None:
    """The controller manager is working once its service-account controller has made `default`'s account."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    core = client.CoreV1Api(cp.client())
    api_log = cp.directory / "log" / "kube-apiserver.log"

    def made() -> bool:
        if not alive(cp.pids["kube-apiserver"]):
            tail = api_log.read_text(errors="replace").strip().splitlines()[-3:]
            raise OperationError(f"kube-apiserver exited: {' | '.join(tail)}")
        try:
            core.read_namespaced_service_account("default", "default")
        except (ApiException, HTTPError, OSError):
            return False
        return True

    wait("kube-controller-manager (the default service account)", made, 120, cp.pids["kube-controller-manager"], log)


def load(directory: Path) -> ControlPlane | None:
    """The control plane recorded in ``directory`` if all its processes still run."""
    try:
        state = json.loads((directory / _STATE).read_text())
        pids = {str(k): int(v) for k, v in state["pids"].items()}
        server, contexts = str(state["server"]), tuple(str(c) for c in state["contexts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if set(pids) != set(_ORDER) or not all(alive(p) for p in pids.values()):
        return None
    return ControlPlane(directory, server, directory / "kubeconfig", contexts, pids)


def stop(directory: Path) -> bool:
    """Stop the control plane recorded in ``directory``; whether one was running."""
    try:
        pids = {str(k): int(v) for k, v in json.loads((directory / _STATE).read_text())["pids"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    for name in _ORDER:
        if name in pids:
            stop_pids([pids[name]], grace=15)
    (directory / _STATE).unlink(missing_ok=True)
    return True


# -- what the program needs in the cluster ---------------------------------------------------


def apply_crds(cp: ControlPlane, files: Iterable[Path], say: Callable[[str], None] = lambda _m: None) -> list[str]:
    """Create (or replace) the CustomResourceDefinitions in ``files`` and wait until each is Established."""
    docs = [d for path in files for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))]
    return apply_crd_docs(cp, docs, say)


def apply_crd_docs(cp: ControlPlane, docs: Iterable[Any], say: Callable[[str], None] = lambda _m: None) -> list[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.ApiextensionsV1Api(cp.client())
    names = []
    for doc in docs:
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        name = doc["metadata"]["name"]
        try:
            live = api.read_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status != 404:
                raise OperationError(f"CRD {name}: {exc.status} {exc.reason}") from None
            api.create_custom_resource_definition(doc)
        else:
            doc["metadata"]["resourceVersion"] = live.metadata.resource_version
            api.replace_custom_resource_definition(name, doc)
        names.append(name)

    def established(name: str) -> bool:
        conds = api.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    for name in names:
        wait(f"CRD {name} to be established", lambda name=name: established(name), 60)
    say(f"CRDs installed: {', '.join(names)}")
    return names


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str]
    address: str


def register_nodes(cp: ControlPlane, nodes: Iterable[NodeSpec], say: Callable[[str], None] = lambda _m: None) -> None:
    """Each node as a Node object with its labels and address: what a kubelet would register, minus the kubelet.

    No Ready condition is written: nothing runs on these Nodes, and the cluster says so.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(cp.client())
    names = []
    for node in nodes:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": node.labels}}
        try:
            core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise OperationError(f"registering Node {node.name}: {exc.status} {exc.reason}") from None
            core.patch_node(node.name, {"metadata": {"labels": node.labels}})
        status = {
            "addresses": [{"type": "InternalIP", "address": node.address}, {"type": "Hostname", "address": node.name}]
        }
        core.patch_node_status(node.name, {"status": status})
        names.append(node.name)
    say(f"Nodes registered (no kubelet): {', '.join(names)}")


def ensure_namespaces(cp: ControlPlane, names: Iterable[str]) -> None:
    """Namespaces that must exist before objects in them can be dry-run applied (one already there is kept)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(cp.client())
    for name in sorted(set(names)):
        try:
            core.create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise OperationError(f"namespace {name}: {exc.status} {exc.reason}") from None
