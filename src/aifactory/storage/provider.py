"""The Pulumi dynamic provider for a site's buckets: ``pulumi up`` creates and converges them with boto3.

Pulumi pickles a dynamic provider with dill into the resource's ``__provider`` property and, in
its provider process, unpickles it and calls :meth:`BucketProvider.configure` with the stack's
configuration (the CLI decrypts secure values for it). What Pulumi's own tracker says shaped this:
whatever a provider captures is pickled into the state, which is why ``__provider`` is always
marked secret (pulumi/pulumi#8265, #13315, opt-out in #15539); ``configure`` is the supported way
to read configuration inside the provider. So the keys are read only there, from
``aifactory:objectStoreCredentials``: the instance the program pickles holds none, and the
resource's inputs and outputs hold none. With this SDK (3.272) dill pickles the class by
reference (pulumi/pulumi#7453 is about classes outside ``__main__``), so the provider process
imports this module from the project's virtualenv; importing it registers nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from ..stackfile import S3_CREDENTIALS_KEY
from . import buckets, s3

# Inputs whose change means another bucket: S3 cannot rename a bucket or move it between stores.
_REPLACE_ON = ("bucket", "endpoint", "region")
_SPEC_KEYS = ("bucket", "site", "endpoint", "region", "versioning", "objectLock", "policy", "lifecycle", "tags")


def _where(props: dict[str, Any]) -> str:
    return f"site {props.get('site', '?')}, bucket {props.get('bucket', '?')}"


def _spec(props: dict[str, Any]) -> dict[str, Any]:
    return {k: _whole(props.get(k)) for k in _SPEC_KEYS}


def _whole(value: Any) -> Any:
    """Whole numbers as ints again: the engine hands a provider every number as a float.

    Pulumi's wire format is protobuf's Struct, whose numbers are doubles, so under the real engine
    a lifecycle rule's 7 days arrive as 7.0, and boto3 refuses a float where S3 wants an integer
    (seen: the first `pulumi up` of the lab failed on every bucket; calling the provider directly
    with the spec's own ints had hidden it).
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def credentials_from_config(raw: Any) -> s3.Credentials | None:
    """The stack's object store keys as the CLI hands them to a provider: a mapping, or its JSON text."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, dict):
        return None
    access, secret = raw.get("access_key_id"), raw.get("secret_access_key")
    if isinstance(secret, dict):  # still {secure: ...}: the CLI did not decrypt it for us
        return None
    if not isinstance(access, str) or not isinstance(secret, str) or not access or not secret:
        return None
    return s3.Credentials(access, secret)


class BucketProvider(ResourceProvider):
    def __init__(self) -> None:
        super().__init__()
        self._creds: s3.Credentials | None = None

    def configure(self, req: ConfigureRequest) -> None:
        self._creds = credentials_from_config(req.config.get(S3_CREDENTIALS_KEY))

    def _client(self, props: dict[str, Any]) -> Any:
        if self._creds is None:
            raise s3.StoreError(
                f"{_where(props)}: config {S3_CREDENTIALS_KEY} is not set for this stack "
                "(access_key_id, and secret_access_key as a Pulumi secret)"
            )
        return s3.client(props["endpoint"], props["region"], self._creds)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        # Object lock is set when a bucket is created and never after (S3 PutObjectLockConfiguration
        # on a bucket created without it is refused): say so at preview, not halfway through an update.
        if (
            _olds
            and _olds.get("bucket") == news.get("bucket")
            and not _olds.get("objectLock")
            and news.get("objectLock")
        ):
            failures.append(
                CheckFailure(
                    "objectLock",
                    f"{_where(news)}: object lock can only be enabled when a bucket is created; "
                    "declare a new bucket with the lock and copy the objects into it",
                )
            )
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in _SPEC_KEYS if olds.get(k) != news.get(k)]
        replaces = [k for k in changed if k in _REPLACE_ON]
        return DiffResult(
            changes=bool(changed), replaces=replaces, stables=["bucket"], delete_before_replace=bool(replaces)
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = _spec(props)
        buckets.converge(self._client(props), spec, _where(props))
        return CreateResult(id_=spec["bucket"], outs=spec)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = buckets.read(self._client(props), id_, _where(props))
        if not live.exists:
            return ReadResult(None, {})
        outs = {
            **_spec(props),
            "bucket": id_,
            "region": live.region,
            "versioning": live.versioning,
            "objectLock": live.object_lock,
            "policy": live.policy,
            "lifecycle": live.lifecycle,
            "tags": live.tags,
        }
        return ReadResult(id_, outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec = _spec(news)
        buckets.converge(self._client(news), spec, _where(news))
        return UpdateResult(outs=spec)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        buckets.delete(self._client(props), id_, _where(props))


class S3Bucket(Resource, module="aifactory", name="S3Bucket"):
    """One bucket in the site's in-country store, created and converged by :class:`BucketProvider`."""

    bucket: pulumi.Output[str]
    region: pulumi.Output[str]

    def __init__(self, name: str, spec: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(BucketProvider(), name, dict(spec), opts)
