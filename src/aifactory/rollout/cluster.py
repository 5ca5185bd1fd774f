"""Taking a node out of service before its batch and back after, through the Kubernetes API.

What `kubectl drain` does, in the API's own terms (kubernetes.io, "Safely Drain a Node" and "API-
initiated Eviction"): mark the Node unschedulable, then evict each of its pods through the Eviction
subresource, which the API server refuses with 429 while a PodDisruptionBudget would be broken;
retry those until the timeout. Pods of DaemonSets (they would come straight back, and the GPU
operator's own run as DaemonSets) and static (mirror) pods are left, as kubectl's defaults do.

A node an operator had cordoned before the rollout stays cordoned afterwards (gpu-operator issue
2820): the rollout records that it found it so and never uncordons it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..model import Site

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"  # set by the kubelet on the API copy of a static pod
RETRY_SECONDS = 5.0
# (connect, read) seconds for every API request: a request answers in well under a second on a
# healthy API server; these only bound one that accepts connections and never answers.
API_TIMEOUT = (5.0, 15.0)
API_RETRIES = 1  # urllib3's own retries of a request that timed out: a silent server costs 2 x 15 s a call


class DrainError(Exception):
    """The node could not be taken out of service; it stays cordoned."""


def _api_errors() -> tuple[type[BaseException], ...]:
    """What a call through the client raises when the API refuses or cannot be reached (imported late:
    the kubernetes client loads only where a site has a cluster)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return (ApiException, HTTPError, OSError)


def _api_error(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status is not None:
        return f"Kubernetes API: {status} {getattr(exc, 'reason', '')}".rstrip()
    return f"Kubernetes API unreachable: {' '.join(str(exc).split())[:200]}"


class Service(Protocol):
    """What the rollout asks of wherever the site's nodes serve."""

    skipped: str | None  # why nodes are not taken out of service at all, or None

    def take_out(self, node: str) -> str: ...

    def put_back(self, node: str) -> str: ...


@dataclass
class NoCluster:
    """A site whose nodes are not Nodes of a cluster: nothing to cordon or drain."""

    skipped: str | None

    def take_out(self, node: str) -> str:
        return f"SKIPPED: {self.skipped}"

    def put_back(self, node: str) -> str:
        return f"SKIPPED: {self.skipped}"


class Cluster:
    """The site's cluster, reached through the kubeconfig context the stack declares, and no other."""

    skipped = None

    def __init__(self, core: Any, timeout: float, say: Callable[[str], None] = print) -> None:
        self.core = core
        self.timeout = timeout
        self.say = say
        # Both sets live in the rollout's record, so a resumed rollout still tells a node it
        # cordoned itself (and may uncordon) from one an operator had cordoned (which stays so).
        # A batch's drains run on threads, each adding only its own node (one set operation each).
        self.cordoned_by_operator: set[str] = set()
        self.cordoned_by_rollout: set[str] = set()

    @classmethod
    def for_context(
        cls, context: str, timeout: float, say: Callable[[str], None] = print, config_file: str | None = None
    ) -> Cluster:
        """The kubeconfig is $KUBECONFIG or ~/.kube/config, as kubectl reads it, unless ``config_file``."""
        import os

        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        from . import kubeconfig

        path = config_file or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        if os.pathsep in path:  # kubectl merges a list; a rollout reads one file, the one it names
            from ..errors import ConfigError, Problem

            raise ConfigError([Problem("KUBECONFIG", "", "names several files; name the one with the site's context")])
        checked = kubeconfig.load(Path(path), context)
        try:
            cfg = client.Configuration()
            config.load_kube_config_from_dict(checked, context=context, client_configuration=cfg)
            cfg.retries = API_RETRIES  # read when the connection pool is made: before the ApiClient
            api = client.ApiClient(cfg)
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            from ..errors import OperationError

            raise OperationError(f"kubeconfig context {context!r} (kubernetes.context): {exc}") from None
        return cls(client.CoreV1Api(api), timeout, say)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API request, bounded: connect and read timeouts on every call (API_TIMEOUT), so an API server
        that accepts and never answers fails this node's step within that bound instead of stalling."""
        from urllib3.exceptions import MaxRetryError
        from urllib3.exceptions import TimeoutError as Urllib3Timeout

        try:
            return fn(*args, _request_timeout=API_TIMEOUT, **kwargs)
        except (Urllib3Timeout, MaxRetryError) as exc:
            if isinstance(exc, MaxRetryError) and not isinstance(exc.reason, Urllib3Timeout):
                raise
            raise DrainError(
                f"Kubernetes API: no answer within {API_TIMEOUT[0]:.0f} s to connect or {API_TIMEOUT[1]:.0f} s "
                f"to respond, {API_RETRIES + 1} tries ({what})"
            ) from None

    def take_out(self, node: str) -> str:
        errors = _api_errors()
        try:
            spec = self._call(f"read Node {node}", self.core.read_node, node).spec
            if spec is not None and spec.unschedulable:
                if node not in self.cordoned_by_rollout:
                    self.cordoned_by_operator.add(node)
            else:
                self._call(f"cordon {node}", self.core.patch_node, node, {"spec": {"unschedulable": True}})
                self.cordoned_by_rollout.add(node)
            evicted = self._drain(node)
        except errors as exc:
            raise DrainError(_api_error(exc)) from None
        was = "was cordoned by an operator; " if node in self.cordoned_by_operator else "cordoned; "
        return f"{was}drained: {evicted} pod(s) evicted"

    def put_back(self, node: str) -> str:
        if node in self.cordoned_by_operator:
            return "left cordoned: an operator had cordoned it before the rollout"
        errors = _api_errors()
        try:
            self._call(f"uncordon {node}", self.core.patch_node, node, {"spec": {"unschedulable": False}})
        except errors as exc:
            raise DrainError(f"uncordon: {_api_error(exc)}") from None
        self.cordoned_by_rollout.discard(node)
        return "uncordoned"

    def _evictable(self, node: str) -> list[Any]:
        pods = self._call(
            f"list the pods of {node}", self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}"
        ).items
        out = []
        for pod in pods:
            owners = pod.metadata.owner_references or []
            if any(o.kind == "DaemonSet" for o in owners):
                continue
            if MIRROR_ANNOTATION in (pod.metadata.annotations or {}):
                continue
            if pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
                continue
            out.append(pod)
        return out

    def _drain(self, node: str) -> int:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + self.timeout
        evicted: set[tuple[str, str]] = set()
        while True:
            pending = self._evictable(node)
            if not pending:
                return len(evicted)
            blocked = []
            for pod in pending:
                ns, name = pod.metadata.namespace, pod.metadata.name
                if (ns, name) in evicted:
                    continue  # asked already: waiting for it to go
                body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=ns))
                try:
                    self._call(f"evict {ns}/{name}", self.core.create_namespaced_pod_eviction, name, ns, body)
                    evicted.add((ns, name))
                except ApiException as exc:
                    if exc.status == 404:
                        evicted.add((ns, name))
                    elif exc.status == 429:  # a PodDisruptionBudget would be broken: retry
                        blocked.append(f"{ns}/{name}")
                    else:
                        raise
            if time.monotonic() >= deadline:
                left = blocked or [f"{p.metadata.namespace}/{p.metadata.name}" for p in pending]
                raise DrainError(
                    f"drain timed out after {self.timeout:.0f} s with {len(left)} pod(s) left"
                    + (" (PodDisruptionBudget)" if blocked else "")
                    + f": {', '.join(sorted(left)[:5])}"
                )
            if blocked:
                self.say(f"  {node}: {len(blocked)} pod(s) held by a PodDisruptionBudget; retrying")
            time.sleep(RETRY_SECONDS if blocked else 1.0)


@dataclass
class DryRun:
    """A dry run: says whether nodes would be taken out of service, and touches none."""

    skipped: str | None

    def take_out(self, node: str) -> str:
        raise AssertionError("a dry run takes no node out of service")

    def put_back(self, node: str) -> str:
        raise AssertionError("a dry run puts no node back")


def skip_reason(site: Site) -> str | None:
    if site.kubernetes.nodes_joined:
        return None
    return (
        f"the nodes of {site.code} are not Nodes of a cluster (kubernetes.nodes_joined: false): "
        "nothing to cordon or drain"
    )


def for_site(site: Site, timeout: float, say: Callable[[str], None] = print) -> Service:
    reason = skip_reason(site)
    if reason:
        return NoCluster(reason)
    return Cluster.for_context(site.kubernetes.context, timeout, say)
