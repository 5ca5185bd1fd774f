"""A site's whole object store: apply every declared bucket, or check the store against the stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, Problem
from ..stackfile import S3_CREDENTIALS_KEY, Stack
from . import buckets, s3, spec

Say = Callable[[str], None]


def credentials(stack: Stack, env: dict[str, str] | None = None) -> s3.Credentials:
    """The store's keys from the stack, the secret decrypted with the stack's passphrase."""
    from ..secrets import Crypter, SecretsError, read_passphrase

    cred = stack.s3_credential
    if cred is None:
        raise ConfigError(
            [
                Problem(
                    stack.shown,
                    S3_CREDENTIALS_KEY,
                    "missing: the object store's access_key_id and secret_access_key (secure) are needed to reach it",
                )
            ]
        )
    try:
        crypter = Crypter.from_state(read_passphrase(env), stack.encryptionsalt)
        secret = crypter.decrypt(cred.secret_ciphertext)
    except SecretsError as exc:
        raise ConfigError([Problem(stack.shown, f"{S3_CREDENTIALS_KEY}.secret_access_key", str(exc))]) from None
    return s3.Credentials(cred.access_key_id, secret)


def connect(stack: Stack, creds: s3.Credentials, **kwargs: Any) -> Any:
    store = stack.site.storage.object_store
    return s3.client(store.url, store.region, creds, **kwargs)


def where(stack: Stack, bucket: str) -> str:
    return f"site {stack.site.code}, bucket {bucket}"


@dataclass
class BucketResult:
    bucket: str
    actions: list[str] = field(default_factory=list)
    error: str | None = None


def apply(stack: Stack, client: Any, say: Say = print) -> list[BucketResult]:
    """Converge every declared bucket; a failed bucket does not stop the others. Never deletes one."""
    results = []
    for desired in spec.site_specs(stack.site):
        name = desired["bucket"]
        result = BucketResult(name)
        try:
            result.actions = buckets.converge(client, desired, where(stack, name), say=say)
            say(f"{where(stack, name)}: " + ("as declared" if not result.actions else "converged"))
        except s3.StoreError as exc:
            result.error = str(exc)
            say(f"error: {exc}")
        results.append(result)
    return results


@dataclass
class CheckReport:
    site: str
    endpoint: str
    live: dict[str, buckets.Live]
    drift: list[buckets.Drift]
    extra: list[str]

    @property
    def clean(self) -> bool:
        return not self.drift and not self.extra

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "endpoint": self.endpoint,
            "clean": self.clean,
            "buckets": {name: live.as_dict() for name, live in sorted(self.live.items())},
            "drift": [
                {
                    "bucket": d.bucket,
                    "field": d.field,
                    "declared": d.declared,
                    "live": d.live,
                    "repairable": d.repairable,
                }
                for d in self.drift
            ],
            "extra": self.extra,
        }


def extra_buckets(stack: Stack, client: Any) -> list[str]:
    """Buckets the store's account owns that the stack does not declare."""
    declared = {s["bucket"] for s in spec.site_specs(stack.site)}  # the site's, its tenants' and retired ones
    return [b for b in buckets.owned_buckets(client, f"site {stack.site.code}") if b not in declared]


def check(stack: Stack, client: Any) -> CheckReport:
    """Read the live store; report each declared bucket's drift and the buckets nobody declared."""
    desired = spec.site_specs(stack.site)
    live = {d["bucket"]: buckets.read(client, d["bucket"], where(stack, d["bucket"])) for d in desired}
    found: list[buckets.Drift] = []
    for d in desired:
        found.extend(buckets.drift(d, live[d["bucket"]]))
    store = stack.site.storage.object_store
    return CheckReport(stack.site.code, store.url, live, found, extra_buckets(stack, client))
