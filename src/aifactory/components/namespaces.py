"""The namespace an operator's pods run in: created by the program, Pod Security `privileged`.

The GPU operator's operands, the DRA driver's kubelet plugin and IMEX daemons, and the network
operator's device plugins load drivers and open device nodes, so their namespace admits privileged
pods; tenants' namespaces are built apart (components/tenants.py), with their own admission policy.
"""

from __future__ import annotations

import pulumi
from pulumi_kubernetes.core.v1 import Namespace

from .. import labels


def operator_namespace(
    resource_name: str, namespace: str, parent: pulumi.Resource, extra_labels: dict[str, str] | None = None
) -> Namespace:
    return Namespace(
        resource_name,
        metadata={
            "name": namespace,
            "labels": {
                "pod-security.kubernetes.io/enforce": "privileged",
                **(extra_labels or {}),
                labels.MANAGED_BY: "aifactory",
            },
        },
        opts=pulumi.ResourceOptions(parent=parent),
    )
