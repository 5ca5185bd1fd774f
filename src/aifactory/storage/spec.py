"""What each bucket of a site must be, derived from the site model alone.

One plain, JSON-able dictionary per bucket: the Pulumi dynamic resource's inputs, what
``storage apply`` converges and what ``storage check`` compares the live store against. Everything
here is data; nothing from the stack file is ever rendered into a policy as text: the policy is a
structure built here and serialised once by ``json.dumps``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from .. import labels, tenancy
from ..model import Bucket, ObjectStore, Site

# Bucket tags: S3 allows letters, digits, spaces and + - = . _ : / @ in keys and values.
TAG_SITE = labels.SITE
TAG_JURISDICTION = labels.JURISDICTION
TAG_CLASSIFICATION = labels.CLASSIFICATION
TAG_ROLE = f"{labels.PREFIX}/bucket-role"
TAG_MANAGED_BY = labels.MANAGED_BY
TAG_TENANT = labels.TENANT

# What the site's own principals may do; the owner (the credentials the stack holds) has the rest.
_PRINCIPAL_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation")
# What a tenant's principal may do in its own buckets, and nobody else but the owner: its data,
# read, written, deleted and listed; never the bucket's policy, lock, versioning or the bucket itself.
TENANT_ACTIONS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads",
    "s3:AbortMultipartUpload",
    "s3:GetBucketLocation",
)
# The evidence store keeps everything: no principal, the owner included, may delete an object, a
# version or the bucket (object lock also refuses them for the retention period; this holds after it).
_EVIDENCE_DENY = ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteBucket")


def endpoint_is_tls(store: ObjectStore) -> bool:
    return urlsplit(store.url).scheme == "https"


def principal_arn(user: str) -> str:
    """A store user as bucket policies name it (Ceph RGW: arn:aws:iam:::user/NAME; field notes)."""
    return f"arn:aws:iam:::user/{user}"


def policy(store: ObjectStore, bucket: Bucket, tenant: str | None = None) -> dict[str, Any] | None:
    """The bucket policy, or None when the bucket needs none (private to its owner by ACL).

    A tenant's bucket grants its principal alone: the site's principals get nothing there, and any
    other store user is refused by the store itself (an S3 bucket is its owner's unless a policy
    grants more).
    """
    arn = f"arn:aws:s3:::{bucket.name}"
    resources = [arn, f"{arn}/*"]
    statements: list[dict[str, Any]] = []
    if endpoint_is_tls(store):
        # Only meaningful on a TLS endpoint; Ceph RGW 16 does not evaluate it (field notes), so a
        # store that must refuse plain HTTP serves only TLS as well.
        statements.append(
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": resources,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        )
    if tenant is not None:
        statements.append(
            {
                "Sid": "TenantOnly",
                "Effect": "Allow",
                "Principal": {"AWS": [principal_arn(tenant)]},
                "Action": list(TENANT_ACTIONS),
                "Resource": resources,
            }
        )
    elif store.principals:
        statements.append(
            {
                "Sid": "SitePrincipals",
                "Effect": "Allow",
                "Principal": {"AWS": [f"arn:aws:iam:::user/{p}" for p in store.principals]},
                "Action": list(_PRINCIPAL_ACTIONS),
                "Resource": resources,
            }
        )
    if bucket.role == "evidence":
        statements.append(
            {
                "Sid": "NoDeletes",
                "Effect": "Deny",
                "Principal": "*",
                "Action": list(_EVIDENCE_DENY),
                "Resource": resources,
            }
        )
    if not statements:
        return None
    return {"Version": "2012-10-17", "Statement": statements}


def lifecycle(bucket: Bucket) -> list[dict[str, Any]]:
    """Lifecycle rules in a canonical form (rule id → its one action), sorted by id."""
    rules = []
    lc = bucket.lifecycle
    if lc.abort_multipart_days is not None:
        rules.append({"id": "aifactory-abort-multipart", "abort_multipart_days": lc.abort_multipart_days})
    if lc.noncurrent_days is not None and bucket.versioning:
        rules.append({"id": "aifactory-noncurrent", "noncurrent_days": lc.noncurrent_days})
    if lc.expire_days is not None:
        rules.append({"id": "aifactory-expire", "expire_days": lc.expire_days})
    return sorted(rules, key=lambda r: r["id"])


def tags(site: Site, bucket: Bucket) -> dict[str, str]:
    return {
        TAG_SITE: site.code,
        TAG_JURISDICTION: site.jurisdiction.data_residency,
        TAG_CLASSIFICATION: bucket.classification,
        TAG_ROLE: bucket.role,
        TAG_MANAGED_BY: "aifactory",
    }


def bucket_spec(site: Site, bucket: Bucket, tenant: str | None = None, owner: str | None = None) -> dict[str, Any]:
    """One bucket's spec; ``tenant`` is the principal it is granted to alone, ``owner`` the tenant it belongs to."""
    store = site.storage.object_store
    doc = policy(store, bucket, tenant)
    sse = store.encryption if store.encryption != "none" and bucket.classification in tenancy.ENCRYPTED else None
    return {
        "bucket": bucket.name,
        "site": site.code,
        "endpoint": store.url,
        "region": store.region,
        "versioning": bucket.versioning,
        "objectLock": (
            {"mode": bucket.object_lock.mode, "days": bucket.object_lock.days} if bucket.object_lock else None
        ),
        # Serialised here, once, in a stable form: what RGW stores and returns is compared as JSON.
        "policy": json.dumps(doc, sort_keys=True) if doc else None,
        "lifecycle": lifecycle(bucket),
        "tags": {**tags(site, bucket), **({TAG_TENANT: owner} if owner else {})},
        # Only where the store encrypts: a spec without the key reads and converges as before.
        **({"encryption": sse} if sse else {}),
    }


def site_specs(site: Site) -> list[dict[str, Any]]:
    """The site's buckets, each tenant's (granted to its principal alone), and retired tenants' (to no one)."""
    out = [bucket_spec(site, b) for b in site.storage.object_store.buckets]
    for t in site.tenants:
        out += [bucket_spec(site, b, tenancy.principal(t), t.name) for b in tenancy.buckets(site, t)]
    out += [bucket_spec(site, b, None, name) for name, b in tenancy.retired_buckets(site)]
    return out
