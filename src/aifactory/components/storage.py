"""Storage classes for the parallel/local filesystems and the in-country object buckets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.storage.v1 import StorageClass

from .. import labels
from ..model import Bucket, ObjectStore, Site


@dataclass(frozen=True)
class BucketArgs:
    """Everything a bucket provider needs; the shape a boto3 dynamic provider will take as inputs."""

    name: str
    endpoint: str
    region: str
    country: str
    versioning: bool
    object_lock_days: int | None
    replication: dict[str, str] | None

    @classmethod
    def of(cls, store: ObjectStore, bucket: Bucket) -> BucketArgs:
        return cls(
            name=bucket.name,
            endpoint=store.url,
            region=store.region,
            country=store.country,
            versioning=bucket.versioning,
            object_lock_days=bucket.object_lock_days,
            replication=bucket.replication.model_dump() if bucket.replication else None,
        )

    def inputs(self) -> dict[str, Any]:
        return {
            "bucket": self.name,
            "endpoint": self.endpoint,
            "region": self.region,
            "country": self.country,
            "versioning": self.versioning,
            "objectLockDays": self.object_lock_days,
            "replication": self.replication,
        }


class ObjectBucket(pulumi.ComponentResource):
    """An S3 bucket in the site's own object store.

    Declared, not yet created: it registers its inputs so plans, diffs and audits see it.
    Creating it through boto3 will make this a ``pulumi.dynamic.Resource`` with the same
    inputs; the URN (type and name) is already the one that resource will keep.
    """

    def __init__(self, name: str, args: BucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:storage:Bucket", name, args.inputs(), opts)
        self.bucket = pulumi.Output.from_input(args.name)
        self.url = pulumi.Output.from_input(f"{args.endpoint.rstrip('/')}/{args.name}")
        self.register_outputs({"bucket": self.bucket, "url": self.url})


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
        store = site.storage.object_store
        self.buckets = {
            b.name: ObjectBucket(f"bucket-{b.name}", BucketArgs.of(store, b), opts=child) for b in store.buckets
        }
        self.register_outputs({"buckets": [b.name for b in store.buckets]})
