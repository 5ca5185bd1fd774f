"""Storage classes for the parallel/local filesystems and the in-country object buckets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.storage.v1 import StorageClass

from .. import labels
from ..model import Site
from ..storage.provider import S3Bucket
from ..storage.spec import TAG_ROLE, TAG_TENANT, site_specs


def kept_by_destroy(spec: dict[str, Any]) -> str | None:
    """Why `pulumi destroy` (or the bucket leaving the program) keeps this bucket in the store, or None.

    The provider refuses to delete a bucket with object lock or with objects in it, never forcing
    it; three kinds of bucket are so by design: locked records, the stack's own state, and a
    tenant's data (its tenant removed: the site deletes it by hand after its retention, tenancy.py).
    """
    if spec.get("objectLock"):
        return "object lock: its records are kept for their retention, whatever happens to the stack"
    if spec["tags"].get(TAG_ROLE) == "state":
        return "it holds the Pulumi state of the very stack being destroyed"
    if TAG_TENANT in spec["tags"]:
        return f"tenant {spec['tags'][TAG_TENANT]}'s data: kept until the site deletes it by hand after its retention"
    return None


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
    """Pulumi's retainOnDelete, kept in the state, for every bucket kept_by_destroy names: `pulumi up`
    or `destroy` then forgets it and never asks the provider to delete it."""
    return pulumi.ResourceOptions(parent=parent, retain_on_delete=kept_by_destroy(spec) is not None)


@dataclass(frozen=True)
class StorageArgs:
    site: Site


class SiteStorage(pulumi.ComponentResource):
    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:Storage", name, None, opts)
        site = args.site
        child = pulumi.ResourceOptions(parent=self)
        for spec in site.storage.classes:
            metadata: dict[str, Any] = {
                "name": spec.name,
                "labels": {labels.SITE: site.code, labels.MANAGED_BY: "aifactory"},
            }
            if spec.default:
                metadata["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
            StorageClass(
                f"storageclass-{spec.name}",
                metadata=metadata,
                provisioner=spec.provisioner,
                # An empty map is not sent: the API server would store none, and the plan shows what is sent.
                parameters=spec.parameters or None,
                reclaim_policy=spec.reclaim_policy,
                volume_binding_mode="WaitForFirstConsumer" if spec.kind == "local" else "Immediate",
                allow_volume_expansion=spec.kind != "local",
                opts=child,
            )
        self.buckets = {
            spec["bucket"]: ObjectBucket(f"bucket-{spec['bucket']}", spec, opts=child) for spec in site_specs(site)
        }
        self.register_outputs({"buckets": list(self.buckets)})
