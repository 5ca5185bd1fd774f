"""Read, compare, converge and (carefully) delete one bucket: the code every way in shares.

``pulumi up`` reaches it through the dynamic provider, ``aifactory storage apply/check`` directly.
A bucket spec is the dictionary of :func:`aifactory.storage.spec.bucket_spec`.

Converging is a fixed order of idempotent calls (create, versioning, object lock, policy,
lifecycle, tags), each re-read on the next run: an apply cut short anywhere leaves a bucket the
next apply finishes, and nothing records success before the last call has answered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .s3 import StoreError, absent, call, translate

Say = Callable[[str], None]


@dataclass
class Live:
    """What the store says about a bucket; ``exists`` False means the rest is empty."""

    bucket: str
    exists: bool
    region: str | None = None
    versioning: bool = False
    object_lock_enabled: bool = False
    object_lock: dict[str, Any] | None = None
    policy: str | None = None
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    # S3 default bucket encryption (SSEAlgorithm), read only where a spec asks for it: a store that
    # cannot encrypt may not answer the call at all.
    encryption: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Drift:
    bucket: str
    field: str
    declared: Any
    live: Any
    # False: apply cannot repair it (object lock can only be enabled when a bucket is created).
    repairable: bool = True

    def __str__(self) -> str:
        return f"{self.bucket}: {self.field}: declared {_short(self.declared)}, store has {_short(self.live)}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def _canonical_policy(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _lifecycle_from_s3(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rules:
        if r.get("Status") != "Enabled":
            continue
        rule: dict[str, Any] = {"id": r.get("ID", "")}
        if "AbortIncompleteMultipartUpload" in r:
            rule["abort_multipart_days"] = r["AbortIncompleteMultipartUpload"].get("DaysAfterInitiation")
        if "NoncurrentVersionExpiration" in r:
            rule["noncurrent_days"] = r["NoncurrentVersionExpiration"].get("NoncurrentDays")
        if "Expiration" in r and "Days" in r["Expiration"]:
            rule["expire_days"] = r["Expiration"]["Days"]
        out.append(rule)
    return sorted(out, key=lambda r: r["id"])


def _lifecycle_to_s3(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rules:
        rule: dict[str, Any] = {"ID": r["id"], "Status": "Enabled", "Filter": {"Prefix": ""}}
        if "abort_multipart_days" in r:
            rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": r["abort_multipart_days"]}
        if "noncurrent_days" in r:
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": r["noncurrent_days"]}
        if "expire_days" in r:
            rule["Expiration"] = {"Days": r["expire_days"]}
        out.append(rule)
    return out


def _optional(what: str, fn: Callable[[], Any], *missing: str) -> Any:
    """A read whose 'not configured' answer is a normal state, not an error."""
    try:
        return fn()
    except ClientError as exc:
        if absent(exc, *missing):
            return None
        raise translate(what, exc) from None
    except BotoCoreError as exc:
        raise translate(what, exc) from None


def read(s3: Any, name: str, where: str, encryption: bool = False) -> Live:
    """The live state of one bucket. ``where`` prefixes every error (``site lab, bucket lab-evidence``)."""
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if absent(exc, "404", "NoSuchBucket", "NotFound"):
            return Live(name, exists=False)
        if absent(exc, "403", "Forbidden"):
            # A HEAD answer has no body, so no error code: ask again with a GET to learn which refusal
            # (wrong keys, or a bucket owned by another account).
            call(f"{where}: read", s3.get_bucket_location, Bucket=name)
        raise translate(f"{where}: read", exc) from None
    except BotoCoreError as exc:
        raise translate(f"{where}: read", exc) from None
    loc = call(f"{where}: read location", s3.get_bucket_location, Bucket=name).get("LocationConstraint")
    ver = call(f"{where}: read versioning", s3.get_bucket_versioning, Bucket=name).get("Status")
    lock = _optional(
        f"{where}: read object lock",
        lambda: s3.get_object_lock_configuration(Bucket=name),
        "ObjectLockConfigurationNotFoundError",
    )
    lock_cfg = (lock or {}).get("ObjectLockConfiguration", {})
    retention = lock_cfg.get("Rule", {}).get("DefaultRetention")
    pol = _optional(f"{where}: read policy", lambda: s3.get_bucket_policy(Bucket=name), "NoSuchBucketPolicy")
    lc = _optional(
        f"{where}: read lifecycle",
        lambda: s3.get_bucket_lifecycle_configuration(Bucket=name),
        "NoSuchLifecycleConfiguration",
    )
    tagging = _optional(f"{where}: read tags", lambda: s3.get_bucket_tagging(Bucket=name), "NoSuchTagSet")
    sse = None
    if encryption:
        enc = _optional(
            f"{where}: read encryption",
            lambda: s3.get_bucket_encryption(Bucket=name),
            "ServerSideEncryptionConfigurationNotFoundError",
        )
        rules = (enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        sse = rules[0].get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") if rules else None
    return Live(
        bucket=name,
        exists=True,
        # An empty constraint is S3's default region; a store with a region always returns it.
        region=loc or "",
        versioning=ver == "Enabled",
        object_lock_enabled=lock_cfg.get("ObjectLockEnabled") == "Enabled",
        object_lock=(
            {"mode": retention.get("Mode"), "days": retention.get("Days")}
            if retention and "Days" in retention
            else None
        ),
        policy=(pol or {}).get("Policy"),
        lifecycle=_lifecycle_from_s3((lc or {}).get("Rules", [])),
        tags={t["Key"]: t["Value"] for t in (tagging or {}).get("TagSet", [])},
        encryption=sse,
    )


def drift(spec: dict[str, Any], live: Live) -> list[Drift]:
    """Every way the live bucket differs from its spec; empty when it is as declared."""
    name = spec["bucket"]
    if not live.exists:
        return [Drift(name, "exists", True, False)]
    out: list[Drift] = []
    if live.region != spec["region"]:
        # A bucket's location is fixed at creation: apply cannot move it.
        out.append(Drift(name, "region", spec["region"], live.region, repairable=False))
    if live.versioning != spec["versioning"]:
        out.append(Drift(name, "versioning", spec["versioning"], live.versioning))
    lock = spec["objectLock"]
    if lock and not live.object_lock_enabled:
        out.append(Drift(name, "objectLock", lock, None, repairable=False))
    elif lock and live.object_lock != lock:
        out.append(Drift(name, "objectLock", lock, live.object_lock))
    elif not lock and live.object_lock:
        out.append(Drift(name, "objectLock", None, live.object_lock))
    if _canonical_policy(spec["policy"]) != _canonical_policy(live.policy):
        out.append(Drift(name, "policy", _canonical_policy(spec["policy"]), _canonical_policy(live.policy)))
    if spec["lifecycle"] != live.lifecycle:
        out.append(Drift(name, "lifecycle", spec["lifecycle"], live.lifecycle))
    if spec["tags"] != live.tags:
        out.append(Drift(name, "tags", spec["tags"], live.tags))
    if spec.get("encryption") and spec["encryption"] != live.encryption:
        out.append(Drift(name, "encryption", spec["encryption"], live.encryption))
    return out


def converge(s3: Any, spec: dict[str, Any], where: str, say: Say = lambda _m: None) -> list[str]:
    """Make the bucket what its spec says; returns what was done (empty: nothing to do).

    Raises StoreError on the first failed call, and for what no call can repair: a bucket in another
    region, or object lock asked of a bucket created without it.
    """
    name = spec["bucket"]
    sse = bool(spec.get("encryption"))
    live = read(s3, name, where, sse)
    done: list[str] = []
    lock = spec["objectLock"]
    if not live.exists:
        kwargs: dict[str, Any] = {
            "Bucket": name,
            "CreateBucketConfiguration": {"LocationConstraint": spec["region"]},
        }
        if lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        say(f"{where}: create in {spec['region']}" + (" with object lock" if lock else ""))
        try:
            s3.create_bucket(**kwargs)
        except ClientError as exc:
            # Ours already (a create cut short, or a race with another run): converge it.
            if not absent(exc, "BucketAlreadyOwnedByYou"):
                raise translate(f"{where}: create", exc) from None
        except BotoCoreError as exc:
            raise translate(f"{where}: create", exc) from None
        done.append("created")
        live = read(s3, name, where, sse)
    found = drift(spec, live)
    problems = [d for d in found if not d.repairable]
    if problems:
        raise StoreError(f"{where}: " + "; ".join(_unrepairable(d) for d in problems))
    for d in found:
        say(f"{where}: set {d.field}")
        _repair(s3, spec, d.field, where)
        done.append(d.field)
    return done


def _unrepairable(d: Drift) -> str:
    if d.field == "region":
        return f"the bucket is in {_short(d.live)}, not {d.declared}: a bucket cannot move; recreate it to move it"
    return (
        "object lock can only be enabled when a bucket is created, and this bucket was created without it: "
        "create a new bucket with the lock and copy the objects into it"
    )


def _repair(s3: Any, spec: dict[str, Any], what: str, where: str) -> None:
    name = spec["bucket"]
    if what == "versioning":
        status = "Enabled" if spec["versioning"] else "Suspended"
        call(
            f"{where}: set versioning",
            s3.put_bucket_versioning,
            Bucket=name,
            VersioningConfiguration={"Status": status},
        )
    elif what == "objectLock":
        lock = spec["objectLock"]
        cfg: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
        if lock:
            cfg["Rule"] = {"DefaultRetention": {"Mode": lock["mode"], "Days": lock["days"]}}
        call(f"{where}: set object lock", s3.put_object_lock_configuration, Bucket=name, ObjectLockConfiguration=cfg)
    elif what == "policy":
        if spec["policy"]:
            call(f"{where}: set policy", s3.put_bucket_policy, Bucket=name, Policy=spec["policy"])
        else:
            call(f"{where}: remove policy", s3.delete_bucket_policy, Bucket=name)
    elif what == "lifecycle":
        if spec["lifecycle"]:
            call(
                f"{where}: set lifecycle",
                s3.put_bucket_lifecycle_configuration,
                Bucket=name,
                LifecycleConfiguration={"Rules": _lifecycle_to_s3(spec["lifecycle"])},
            )
        else:
            call(f"{where}: remove lifecycle", s3.delete_bucket_lifecycle, Bucket=name)
    elif what == "tags":
        tagset = [{"Key": k, "Value": v} for k, v in sorted(spec["tags"].items())]
        call(f"{where}: set tags", s3.put_bucket_tagging, Bucket=name, Tagging={"TagSet": tagset})
    elif what == "encryption":
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": spec["encryption"]}}
        call(
            f"{where}: set encryption",
            s3.put_bucket_encryption,
            Bucket=name,
            ServerSideEncryptionConfiguration={"Rules": [rule]},
        )
    else:  # pragma: no cover - drift() names only the fields above
        raise AssertionError(what)


def delete(s3: Any, name: str, where: str) -> None:
    """Delete an empty, unlocked bucket; refuse anything else with the reason. Never forced."""
    live = read(s3, name, where)
    if not live.exists:
        return
    if live.object_lock_enabled:
        raise StoreError(
            f"{where}: refusing to delete a bucket with object lock (its records are kept by law); "
            "remove it from the stack's state with `pulumi state delete` if it is to stay"
        )
    versions = call(f"{where}: list", s3.list_object_versions, Bucket=name, MaxKeys=1)
    if versions.get("Versions") or versions.get("DeleteMarkers"):
        raise StoreError(f"{where}: refusing to delete a bucket that is not empty; empty it first if that is intended")
    call(f"{where}: delete", s3.delete_bucket, Bucket=name)


def owned_buckets(s3: Any, where: str) -> list[str]:
    return sorted(b["Name"] for b in call(f"{where}: list buckets", s3.list_buckets).get("Buckets", []))
