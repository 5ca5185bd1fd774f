"""The evidence store: records pushed once, kept by object lock, and proven by their hashes.

Each file goes to the site's evidence bucket under ``<site>/<YYYY-MM-DD>/<sha256>/<file name>``:
dated, and addressed by its content, so the same record pushed twice is one object and a key
names exactly one content. The object carries its SHA-256 in its metadata and a COMPLIANCE
retention until the day the site's object lock declares; ``check`` downloads every record again
and proves both hashes and the retention.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ConfigError, Problem
from ..stackfile import Stack
from .s3 import absent, call, translate

Say = Callable[[str], None]
META_SHA256 = "sha256"
# A file name as it may appear in a key: what the commands write, nothing a path could climb with.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
_KEY = re.compile(r"(?P<site>[a-z0-9-]+)/(?P<day>\d{4}-\d{2}-\d{2})/(?P<sha>[0-9a-f]{64})/(?P<name>[^/]+)", re.ASCII)


@dataclass(frozen=True)
class Record:
    key: str
    sha256: str
    name: str
    day: str
    size: int


def _bucket(stack: Stack) -> str:
    bucket = stack.site.storage.object_store.evidence
    if bucket is None:
        raise ConfigError(
            [Problem(stack.shown, "aifactory:site.storage.object_store.buckets", "no bucket has role: evidence")]
        )
    return bucket.name


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_files(paths: Iterable[Path]) -> list[Path]:
    files, problems = [], []
    for p in paths:
        if not p.is_file():
            problems.append(Problem(str(p), "", "not a file"))
        elif not _FILE_NAME.fullmatch(p.name):
            problems.append(
                Problem(str(p), "", "file name must be 1-128 of A-Z a-z 0-9 . _ - (it becomes part of a key)")
            )
        else:
            files.append(p)
    if problems:
        raise ConfigError(problems)
    return files


def push(stack: Stack, s3: Any, files: list[Path], say: Say = print, today: datetime | None = None) -> list[Record]:
    """Upload each file once (a record already there is left as it is); returns the records."""
    bucket = _bucket(stack)
    lock = stack.site.storage.object_store.evidence.object_lock  # type: ignore[union-attr]
    now = today or datetime.now(UTC)
    out = []
    for path in check_files(files):
        digest = sha256_of(path)
        key = f"{stack.site.code}/{now:%Y-%m-%d}/{digest}/{path.name}"
        where = f"site {stack.site.code}, bucket {bucket}, {key}"
        try:
            s3.head_object(Bucket=bucket, Key=key)
            say(f"{where}: already recorded")
        except BotoCoreError as exc:
            raise translate(f"{where}: read", exc) from None
        except ClientError as exc:
            if not absent(exc, "404", "NoSuchKey", "NotFound"):
                raise translate(f"{where}: read", exc) from None
            body = path.read_bytes()
            kwargs: dict[str, Any] = {
                "Bucket": bucket,
                "Key": key,
                "Body": body,
                "Metadata": {META_SHA256: digest},
                # S3 requires an MD5 with object lock headers; it also proves the upload arrived whole.
                "ContentMD5": _md5_b64(body),
            }
            if lock is not None:
                kwargs["ObjectLockMode"] = lock.mode
                kwargs["ObjectLockRetainUntilDate"] = now + timedelta(days=lock.days)
            call(f"{where}: upload", s3.put_object, **kwargs)
            say(f"{where}: recorded ({len(body)} bytes, sha256 {digest[:12]})")
        out.append(Record(key, digest, path.name, f"{now:%Y-%m-%d}", path.stat().st_size))
    return out


def _md5_b64(body: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def records(stack: Stack, s3: Any) -> list[Record]:
    bucket = _bucket(stack)
    out = []
    token: dict[str, str] = {}
    while True:
        page = call(
            f"site {stack.site.code}, bucket {bucket}: list",
            s3.list_objects_v2,
            Bucket=bucket,
            Prefix=f"{stack.site.code}/",
            **token,
        )
        for obj in page.get("Contents", []):
            m = _KEY.fullmatch(obj["Key"])
            if m:
                out.append(Record(obj["Key"], m["sha"], m["name"], m["day"], int(obj.get("Size", 0))))
        if not page.get("IsTruncated"):
            return out
        token = {"ContinuationToken": page["NextContinuationToken"]}


@dataclass(frozen=True)
class Proof:
    record: Record
    problems: tuple[str, ...]


def check(stack: Stack, s3: Any, say: Say = print) -> list[Proof]:
    """Download every record again: its content must hash to its key and its metadata, and it must be locked."""
    bucket = _bucket(stack)
    lock = stack.site.storage.object_store.evidence.object_lock  # type: ignore[union-attr]
    proofs = []
    for rec in records(stack, s3):
        where = f"site {stack.site.code}, bucket {bucket}, {rec.key}"
        obj = call(f"{where}: download", s3.get_object, Bucket=bucket, Key=rec.key)
        body = obj["Body"].read()
        problems = []
        actual = hashlib.sha256(body).hexdigest()
        if actual != rec.sha256:
            problems.append(f"content hashes to {actual}, the key says {rec.sha256}")
        if obj.get("Metadata", {}).get(META_SHA256) != rec.sha256:
            problems.append(f"metadata sha256 is {obj.get('Metadata', {}).get(META_SHA256)!r}")
        if lock is not None:
            mode = obj.get("ObjectLockMode")
            until = obj.get("ObjectLockRetainUntilDate")
            if mode != lock.mode or until is None:
                problems.append(f"not under {lock.mode} retention (mode {mode}, until {until})")
        proofs.append(Proof(rec, tuple(problems)))
        say(f"{where}: " + ("; ".join(problems) if problems else "proven"))
    return proofs
