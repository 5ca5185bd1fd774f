"""Storage classes for the parallel/local filesystems and the in-country object buckets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.storage.v1 import StorageClass

from .. import labels
from ..model import Site
from ..storage.provider import S3Bucket
from ..storage.spec import TAG_TENANT, site_specs


class ObjectBucket(pulumi.ComponentResource):
    """An S3 bucket in the site's own object store, created and converged through boto3.

    The component keeps the URN stacks already hold (``aifactory:storage:Bucket``, ``bucket-NAME``);
    the bucket itself is its child, a dynamic resource (:mod:`aifactory.storage.provider`) whose
    inputs are the bucket's spec (:mod:`aifactory.storage.spec`) and never a credential.
    """

    def __init__(self, name: str, spec: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:storage:Bucket", name, spec, opts)
        created = S3Bucket(name, spec, bucket_options(self, spec))
        self.bucket = created.bucket
        self.url = pulumi.Output.from_input(f"{spec['endpoint'].rstrip('/')}/{spec['bucket']}")
        self.register_outputs({"bucket": self.bucket, "url": self.url})


def bucket_options(parent: pulumi.Resource, spec: dict[str, Any]) -> pulumi.ResourceOptions:
    """A tenant's bucket is retained when it leaves the program (its tenant removed): Pulumi's
    retainOnDelete, kept in the state, so `pulumi up` never asks the provider to delete a tenant's
    data; the site declares its retention in retired_tenants and deletes it by hand after."""
    return pulumi.ResourceOptions(parent=parent, retain_on_delete=TAG_TENANT in spec["tags"])


@dataclass(frozen=True)
class StorageArgs:
    site: Site


class SiteStorage(pulumi.ComponentResource):
    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:Storage", name, None, opts)
        site = args.site
        child = pulumi.ResourceOptions(parent=self)
        for spec in site.storage.classes:
            annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if spec.default else {}
            StorageClass(
                f"storageclass-{spec.name}",
                metadata={
                    "name": spec.name,
                    "annotations": annotations,
                    "labels": {labels.SITE: site.code, labels.MANAGED_BY: "aifactory"},
                },
                provisioner=spec.provisioner,
                parameters=spec.parameters,
                reclaim_policy=spec.reclaim_policy,
                volume_binding_mode="WaitForFirstConsumer" if spec.kind == "local" else "Immediate",
                allow_volume_expansion=spec.kind != "local",
                opts=child,
            )
        self.buckets = {
            spec["bucket"]: ObjectBucket(f"bucket-{spec['bucket']}", spec, opts=child) for spec in site_specs(site)
        }
        self.register_outputs({"buckets": list(self.buckets)})
