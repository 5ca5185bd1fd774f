"""GPU-as-a-service tenants: a namespace each, a GPU quota, default limits and an admission policy.

Pod Security has no level between `baseline` and `privileged`, and `baseline` forbids the
IPC_LOCK capability that RDMA pods add to pin memory (Kubernetes Pod Security Standards,
"Capabilities"). Tenant namespaces therefore enforce a ValidatingAdmissionPolicy that holds the
baseline controls that matter for isolation (no privileged containers, no host namespaces, no
hostPath, no hostPort, capabilities from baseline's list) with IPC_LOCK added, while Pod Security
itself warns and audits at `baseline`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_kubernetes.admissionregistration.v1 import ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding
from pulumi_kubernetes.core.v1 import LimitRange, Namespace, ResourceQuota

from .. import labels
from ..model import Site

GPU_RESOURCE = "nvidia.com/gpu"
ADMISSION_POLICY = "aifactory-tenant-baseline-rdma"
# Pod Security Standards, baseline "Capabilities": what a container may add; RDMA needs IPC_LOCK too.
BASELINE_CAPABILITIES = (
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
)
RDMA_CAPABILITIES = ("IPC_LOCK",)


def _containers(check: str) -> str:
    kinds = ("containers", "initContainers", "ephemeralContainers")
    return " && ".join(f"(!has(object.spec.{k}) || object.spec.{k}.all(c, {check}))" for k in kinds)


# Labels and annotations the isolation rules read (set by this program, never by a tenant: a tenant
# may not write Namespaces).
DEDICATED_NODES = f"{labels.PREFIX}/dedicated-nodes"
NETWORKS = "k8s.v1.cni.cncf.io/networks"  # Multus: the attachments a pod asks for, "name" or "ns/name"


def isolation_validations() -> list[dict[str, str]]:
    """Rules that keep each tenant's pods on its side: its nodes, its attachments, nobody else's.

    A tenant holding nodes (Namespace label DEDICATED_NODES) must select them by the tenant label
    and tolerate their taint; no tenant may select another's nodes by that label, tolerate
    another's taint, tolerate every taint, pin a node by name (the scheduler, and so every taint,
    is bypassed), or attach to a network outside its namespace (its attachments carry its fabric
    partition).
    """
    key, ns = labels.TENANT, "namespaceObject.metadata.name"
    dedicated = f"has(namespaceObject.metadata.labels) && '{DEDICATED_NODES}' in namespaceObject.metadata.labels"
    return [
        {
            "expression": f"!({dedicated}) || (has(object.spec.nodeSelector) && '{key}' in object.spec.nodeSelector"
            f" && object.spec.nodeSelector['{key}'] == {ns})",
            "message": f"this tenant's pods run on its own nodes: set nodeSelector {key}: <the namespace>",
        },
        {
            # Without it the pod selects its nodes and can never be scheduled there: refused now, not Pending.
            "expression": f"!({dedicated}) || (has(object.spec.tolerations) && object.spec.tolerations.exists(t, "
            f"has(t.key) && t.key == '{key}' && has(t.value) && t.value == {ns}))",
            "message": f"this tenant's pods must tolerate its nodes' taint: toleration {key}=<the namespace>",
        },
        {
            # Another tenant's nodes are tainted too; selecting them is refused here, not left Pending.
            "expression": f"!has(object.spec.nodeSelector) || !('{key}' in object.spec.nodeSelector)"
            f" || object.spec.nodeSelector['{key}'] == {ns}",
            "message": "a tenant's pods may select only its own nodes",
        },
        {
            "expression": "!has(object.spec.tolerations) || object.spec.tolerations.all(t, "
            f"(has(t.key) && t.key != '') ? (t.key != '{key}' || ((!has(t.operator) || t.operator == 'Equal')"
            f" && has(t.value) && t.value == {ns})) : !(has(t.operator) && t.operator == 'Exists'))",
            "message": "a tenant's pods may tolerate only its own nodes' taint, and never every taint",
        },
        {
            "expression": "request.operation != 'CREATE' || !has(object.spec.nodeName) || object.spec.nodeName == ''",
            "message": "tenant pods may not name a node (spec.nodeName skips the scheduler and every taint)",
        },
        {
            "expression": f"!has(object.metadata.annotations) || !('{NETWORKS}' in object.metadata.annotations) || ("
            f"!object.metadata.annotations['{NETWORKS}'].trim().startsWith('[') && "
            f"object.metadata.annotations['{NETWORKS}'].split(',').all(n, !n.trim().contains('/')"
            f" || n.trim().startsWith({ns} + '/')))",
            "message": "a tenant's pods attach only to its own namespace's networks (its fabric partition)",
        },
    ]


def admission_validations() -> list[dict[str, str]]:
    allowed = ", ".join(f"'{c}'" for c in (*BASELINE_CAPABILITIES, *RDMA_CAPABILITIES))
    return [
        {
            "expression": "!(has(object.spec.hostNetwork) && object.spec.hostNetwork)"
            " && !(has(object.spec.hostPID) && object.spec.hostPID)"
            " && !(has(object.spec.hostIPC) && object.spec.hostIPC)",
            "message": "tenant pods may not share the host's network, PID or IPC namespace",
        },
        {
            "expression": _containers(
                "!has(c.securityContext) || !has(c.securityContext.privileged) || !c.securityContext.privileged"
            ),
            "message": "tenant containers may not run privileged",
        },
        {
            "expression": "!has(object.spec.volumes) || object.spec.volumes.all(v, !has(v.hostPath))",
            "message": "tenant pods may not mount hostPath volumes",
        },
        {
            "expression": _containers("!has(c.ports) || c.ports.all(p, !has(p.hostPort) || p.hostPort == 0)"),
            "message": "tenant containers may not bind host ports",
        },
        {
            "expression": _containers(
                "!has(c.securityContext) || !has(c.securityContext.capabilities)"
                " || !has(c.securityContext.capabilities.add)"
                f" || c.securityContext.capabilities.add.all(x, x in [{allowed}])"
            ),
            "message": "tenant containers may add only Pod Security baseline's capabilities and IPC_LOCK (RDMA)",
        },
        *isolation_validations(),
    ]


@dataclass(frozen=True)
class TenantsArgs:
    site: Site


class SiteTenants(pulumi.ComponentResource):
    def __init__(self, name: str, args: TenantsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:Tenants", name, None, opts)
        site = args.site
        self.namespaces: dict[str, Namespace] = {}
        for tenant in site.tenants:
            ns = Namespace(
                f"tenant-{tenant.name}",
                metadata={
                    "name": tenant.name,
                    "labels": {
                        labels.SITE: site.code,
                        labels.TENANT: tenant.name,
                        labels.CLASSIFICATION: tenant.data_classification,
                        labels.JURISDICTION: site.jurisdiction.data_residency,
                        # Enforcement is the admission policy below; Pod Security reports at baseline.
                        "pod-security.kubernetes.io/enforce": "privileged",
                        "pod-security.kubernetes.io/warn": "baseline",
                        "pod-security.kubernetes.io/audit": "baseline",
                        labels.MANAGED_BY: "aifactory",
                        **({DEDICATED_NODES: "true"} if tenant.nodes else {}),
                    },
                    "annotations": {"aifactory.io/display-name": tenant.display_name},
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.namespaces[tenant.name] = ns
            in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
            ResourceQuota(
                f"{tenant.name}-gpu-quota",
                metadata={"name": "gpu-quota", "namespace": tenant.name},
                spec={"hard": {f"requests.{GPU_RESOURCE}": str(tenant.gpu_quota)}},
                opts=in_ns,
            )
            LimitRange(
                f"{tenant.name}-limits",
                metadata={"name": "gpu-limits", "namespace": tenant.name},
                spec={
                    "limits": [
                        {
                            "type": "Container",
                            "max": {GPU_RESOURCE: str(tenant.max_gpus_per_pod)},
                            # Without these, Kubernetes copies max into a container's default limit
                            # and request (SetDefaults_LimitRangeItem), so every container that
                            # asks for no GPU would ask for the maximum.
                            "default": {GPU_RESOURCE: "0"},
                            "defaultRequest": {"cpu": "1", "memory": "4Gi", GPU_RESOURCE: "0"},
                        }
                    ]
                },
                opts=in_ns,
            )
        if site.tenants:
            policy = ValidatingAdmissionPolicy(
                "tenant-admission-policy",
                metadata={"name": ADMISSION_POLICY, "labels": {labels.SITE: site.code, labels.MANAGED_BY: "aifactory"}},
                spec={
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE", "UPDATE"],
                                "resources": ["pods"],
                            }
                        ]
                    },
                    "validations": admission_validations(),
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            ValidatingAdmissionPolicyBinding(
                "tenant-admission-binding",
                metadata={"name": ADMISSION_POLICY, "labels": {labels.SITE: site.code, labels.MANAGED_BY: "aifactory"}},
                spec={
                    "policyName": ADMISSION_POLICY,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {"matchExpressions": [{"key": labels.TENANT, "operator": "Exists"}]}
                    },
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
            )
        self.register_outputs({"tenants": [t.name for t in site.tenants]})
