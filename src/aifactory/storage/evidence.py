"""The evidence store: records pushed once, kept by object lock, and proven by their hashes.

Each file goes to the site's evidence bucket under ``<site>/<YYYY-MM-DD>/<sha256>/<file name>``:
dated, and addressed by its content, so the same record pushed twice is one object and a key
names exactly one content. The object carries its SHA-256 in its metadata and a COMPLIANCE
retention until the day the site's object lock declares; ``check`` downloads every record again
and proves both hashes and the retention.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ConfigError, Problem
from ..fsutil import directory, parts_of, refused
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


# An evidence record is a report, a record or a log of the project's: 256 MiB is far above any
# (a 1,000-node rollout record is about 1 MiB) and bounds what one push holds in flight.
EVIDENCE_MAX = 256 << 20


@dataclass(frozen=True)
class Staged:
    """A record opened for upload: its descriptor (held from the check to the upload), size and digests."""

    path: Path
    fd: int
    size: int
    sha256: str
    md5_b64: str


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stage(root: Path, site: str, files: Iterable[Path]) -> list[Staged]:
    """Open every file before any is uploaded: each a regular file the project wrote under runs/<site>/.

    A symlink anywhere below the project root, a FIFO or device, a name no command writes, a file
    outside runs/<site>/, or one above EVIDENCE_MAX refuses the whole push: nothing goes to a store
    that keeps it under a COMPLIANCE lock for years. Each file is read through the descriptor
    opened here, so what was checked is what is uploaded.
    """
    base = root / "runs" / site
    staged: list[Staged] = []
    problems: list[Problem] = []
    try:
        for given in files:
            path = Path(os.path.abspath(given))  # lexical: '..' is resolved, a symlink is not followed
            shown = str(given)
            if base not in path.parents:
                problems.append(Problem(shown, "", f"not a record of {site}: evidence comes from {base}/"))
                continue
            if not _FILE_NAME.fullmatch(path.name):
                problems.append(
                    Problem(shown, "", "file name must be 1-128 of A-Z a-z 0-9 . _ - (it becomes part of a key)")
                )
                continue
            try:
                staged.append(_open(root, path))
            except ConfigError as exc:
                problems.extend(Problem(shown, "", p.message) for p in exc.problems)
            except FileNotFoundError:
                problems.append(Problem(shown, "", "no such file"))
        if problems:
            raise ConfigError(problems)
    except BaseException:
        for st in staged:
            os.close(st.fd)
        raise
    return staged


def _open(root: Path, path: Path) -> Staged:
    names = parts_of(root, path)
    with directory(root, names[:-1]) as dfd:
        try:
            fd = os.open(names[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise refused(path, "a symbolic link: only files the project wrote are evidence") from None
            if exc.errno == errno.ENOENT:
                raise FileNotFoundError(str(path)) from None
            raise refused(path, f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refused(path, "not a regular file: only files the project wrote are evidence")
        if st.st_size > EVIDENCE_MAX:
            raise refused(path, f"larger than {EVIDENCE_MAX >> 20} MiB ({st.st_size >> 20} MiB)")
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > EVIDENCE_MAX:
                raise refused(path, f"larger than {EVIDENCE_MAX >> 20} MiB")
            sha.update(chunk)
            md5.update(chunk)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return Staged(path, fd, size, sha.hexdigest(), base64.b64encode(md5.digest()).decode())


def push(
    stack: Stack, s3: Any, root: Path, files: list[Path], *, say: Say = print, today: datetime | None = None
) -> list[Record]:
    """Upload each file once (a record already there is left as it is); returns the records.

    Every file is checked (stage) before the first upload, and streamed from the descriptor checked.
    """
    bucket = _bucket(stack)
    lock = stack.site.storage.object_store.evidence.object_lock  # type: ignore[union-attr]
    now = today or datetime.now(UTC)
    staged = stage(root, stack.site.code, files)
    out = []
    try:
        for item in staged:
            key = f"{stack.site.code}/{now:%Y-%m-%d}/{item.sha256}/{item.path.name}"
            where = f"site {stack.site.code}, bucket {bucket}, {key}"
            try:
                s3.head_object(Bucket=bucket, Key=key)
                say(f"{where}: already recorded")
            except BotoCoreError as exc:
                raise translate(f"{where}: read", exc) from None
            except ClientError as exc:
                if not absent(exc, "404", "NoSuchKey", "NotFound"):
                    raise translate(f"{where}: read", exc) from None
                with os.fdopen(os.dup(item.fd), "rb") as body:
                    kwargs: dict[str, Any] = {
                        "Bucket": bucket,
                        "Key": key,
                        "Body": body,
                        "ContentLength": item.size,
                        "Metadata": {META_SHA256: item.sha256},
                        # S3 requires an MD5 with object lock headers; it also proves the upload arrived whole.
                        "ContentMD5": item.md5_b64,
                    }
                    if lock is not None:
                        kwargs["ObjectLockMode"] = lock.mode
                        kwargs["ObjectLockRetainUntilDate"] = now + timedelta(days=lock.days)
                    call(f"{where}: upload", s3.put_object, **kwargs)
                say(f"{where}: recorded ({item.size} bytes, sha256 {item.sha256[:12]})")
            out.append(Record(key, item.sha256, item.path.name, f"{now:%Y-%m-%d}", item.size))
    finally:
        for item in staged:
            os.close(item.fd)
    return out


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
