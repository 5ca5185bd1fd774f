"""A boto3 client for a site's store, and every S3 failure turned into one line naming site and bucket."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from ..errors import OperationError

T = TypeVar("T")

# What the store's answer codes mean to the person running the command.
_MEANING = {
    "InvalidAccessKeyId": "the store does not know this access key (wrong credentials)",
    "SignatureDoesNotMatch": "the secret key is wrong for this access key (wrong credentials)",
    "AccessDenied": "access denied",
    "BucketAlreadyExists": "the name is taken by another account on this store; choose another bucket name",
    "InvalidLocationConstraint": "the store refuses this location (its region differs from the site's)",
    "InvalidBucketName": "the store refuses this bucket name",
    "SlowDown": "the store is throttling requests; retried and still throttled",
    "ServiceUnavailable": "the store is unavailable; retried and still unavailable",
    "NoSuchBucket": "the bucket does not exist",
    "BucketNotEmpty": "the bucket is not empty",
}


class StoreError(OperationError):
    """A failed store operation: the CLI prints it as one line and exits 1."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key=[secret])"


# The bounds on a store that accepts connections and never answers (seen: 151 s per bucket before).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0  # between bytes of an answer, not for a whole transfer
ATTEMPTS = 5  # throttling (503 SlowDown) backs off and retries; a timeout trips the breaker after these


class Silent(StoreError):
    """The store did not answer in time earlier in this command: later calls fail at once."""


@dataclass
class _Breaker:
    """Opens at the first timeout: one silent store costs one request's bound, not one per call."""

    endpoint: str
    tripped: str = ""

    def before(self, **_kwargs: Any) -> None:
        if self.tripped:
            raise Silent(f"the store at {self.endpoint} did not answer earlier in this command ({self.tripped})")

    def after_error(self, exception: BaseException | None = None, **_kwargs: Any) -> None:
        if isinstance(exception, (ReadTimeoutError, ConnectTimeoutError)):
            self.tripped = f"no answer within {CONNECT_TIMEOUT:.0f} s to connect or {READ_TIMEOUT:.0f} s to respond"


def bound_seconds(attempts: int = ATTEMPTS) -> float:
    """The longest a command waits on a silent store: one call's attempts, each at most the read timeout."""
    return attempts * (CONNECT_TIMEOUT + READ_TIMEOUT)


def client(endpoint: str, region: str, creds: Credentials, *, attempts: int = ATTEMPTS) -> Any:
    """An S3 client for one in-country endpoint.

    Path-style addressing (no bucket names in DNS), retries in botocore's standard mode (throttling
    and 5xx answers back off and retry), and checksums only where S3 requires them: botocore >= 1.36
    adds CRC32 trailers by default, which stores such as Ceph RGW 16 do not read. Every request
    has connect and read timeouts, and the first timeout opens a breaker: later calls of the same
    command fail at once with the reason, so a silent store fails a command within bound_seconds().
    """
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    made = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        config=config,
    )
    breaker = _Breaker(endpoint)
    made.meta.events.register("before-call.s3", breaker.before)
    made.meta.events.register("after-call-error.s3", breaker.after_error)
    return made


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(what: str, exc: Exception) -> StoreError:
    """The one line a failed S3 call becomes."""
    if isinstance(exc, ClientError):
        c = code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        meaning = _MEANING.get(c) or (exc.response.get("Error", {}).get("Message") or "refused")
        return StoreError(f"{what}: {meaning} ({c or 'HTTP'} {status})")
    if isinstance(exc, (ReadTimeoutError, ConnectTimeoutError)):
        return Silent(
            f"{what}: the store did not answer within {CONNECT_TIMEOUT:.0f} s to connect or {READ_TIMEOUT:.0f} s "
            f"to respond ({ATTEMPTS} attempts)"
        )
    if isinstance(exc, (EndpointConnectionError, ConnectionError)):
        return StoreError(f"{what}: the store did not answer ({type(exc).__name__}: {exc})")
    return StoreError(f"{what}: {type(exc).__name__}: {exc}")


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one S3 call; a failure becomes a StoreError whose text starts with ``what``."""
    try:
        return fn(*args, **kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate(what, exc) from None


def absent(exc: ClientError, *codes: str) -> bool:
    return code(exc) in codes
