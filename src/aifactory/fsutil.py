"""Every file the project reads back or writes: confined under its root, never through a symlink, bounded.

What the project wrote earlier (a rollout record, a run folder, an evidence folder, a test-host
state file) is read back as untrusted input: anyone with write access to the checkout, or a bug,
may have changed it. So:

- A path is built from names that each match :data:`NAME` (no separator, no ``..``), below a root,
  and walked one component at a time with ``O_NOFOLLOW``: a symlink planted anywhere on the way
  is refused, never followed, so nothing is read or written outside the root.
- A read is of a regular file only (not a FIFO, a device or ``/proc``), at most ``limit`` bytes.
- A write goes to a fresh temporary file (``O_CREAT|O_EXCL|O_NOFOLLOW``) in the target's folder,
  fsynced, then renamed over the target: a reader sees the old file or the new one, never half,
  a crash leaves one of the two, and a symlink at the target is replaced, never written through.

A refusal is a :class:`~aifactory.errors.ConfigError` naming the file: exit 2, before anything changes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigError, Problem

# A name the project gives a file or folder it makes: a run stamp, a rollout id, a record's name.
NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9._-]{0,127}", re.ASCII)
# What a record of the project's holds at most: a 1,000-node rollout record is about 1 MiB.
RECORD_MAX = 16 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
M = TypeVar("M", bound=BaseModel)


def refused(path: Path | str, message: str, field: str = "") -> ConfigError:
    return ConfigError([Problem(str(path), field, message)])


def check_name(name: str, what: str = "name") -> str:
    if not NAME.fullmatch(name) or name in {".", ".."}:
        from .grammar import shown

        raise ValueError(f"{shown(name)} is not a {what} (1-128 of A-Z a-z 0-9 . _ -, not starting with _ or -)")
    return name


def parts_of(root: Path, path: Path) -> tuple[str, ...]:
    """The names of ``path`` below ``root``; a path outside it, or with a name the project never makes, is refused."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise refused(path, f"outside {root}") from None
    names = rel.parts
    for n in names:
        try:
            check_name(n, "file name the project writes")
        except ValueError as exc:
            raise refused(path, str(exc)) from None
    return names


def _open_dir(fd: int | None, name: str, shown: Path, *, create: bool) -> int:
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=fd)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symbolic link" if _is_link(fd, name) else "not a directory"
            raise refused(shown, f"{kind}: refusing to follow it") from None
        if exc.errno == errno.ENOENT:
            raise FileNotFoundError(errno.ENOENT, "no such directory", str(shown)) from None
        raise refused(shown, f"cannot open: {exc.strerror}") from None


def _is_link(fd: int | None, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=fd).st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def directory(root: Path, names: tuple[str, ...] | list[str], *, create: bool = False) -> Iterator[int]:
    """A file descriptor of ``root/names...``, each name walked without following a symlink.

    The root itself is the caller's (a checkout, a state root): it is opened as the caller resolved it.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        here = root
        for name in names:
            here = here / name
            nxt = _open_dir(fd, check_name(name, "folder name"), here, create=create)
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def read_bounded(root: Path, names: tuple[str, ...] | list[str], limit: int = RECORD_MAX) -> bytes:
    """The bytes of the regular file ``root/names...``, at most ``limit`` of them; never through a symlink."""
    *dirs, last = names
    shown = root.joinpath(*names)
    with directory(root, dirs) as dfd:
        try:
            fd = os.open(
                check_name(last, "file name"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise refused(shown, "a symbolic link: refusing to follow it") from None
            if exc.errno == errno.ENOENT:
                raise FileNotFoundError(errno.ENOENT, "no such file", str(shown)) from None
            raise refused(shown, f"cannot open: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            return _bounded(f, shown, limit)


def read_user_file(path: Path, limit: int, what: str) -> bytes:
    """A file a person named (an option, a variable): a regular file, at most ``limit`` bytes.

    A symlink the person chose is theirs to follow; a FIFO, a device or an endless file is refused.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refused(what, f"cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        return _bounded(f, what, limit)


def _bounded(f: Any, where: Path | str, limit: int) -> bytes:
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        raise refused(where, "not a regular file")
    if st.st_size > limit:
        raise refused(where, f"larger than {_size(limit)} ({_size(st.st_size)})")
    data = f.read(limit + 1)
    if len(data) > limit:  # grew while being read, or lied about its size (/proc)
        raise refused(where, f"larger than {_size(limit)}")
    return data


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def write_atomic(path: Path, text: str | bytes, mode: int = 0o644, *, root: Path | None = None) -> None:
    """Replace ``path`` whole: a fresh temporary file in its folder, fsynced, renamed over it.

    With ``root``, ``path`` must lie below it and every folder on the way is walked (and made)
    without following a symlink. Without, the folder is the caller's (a path a person named) and
    only the file itself is never followed: a symlink there is replaced, not written through.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    if root is not None:
        names = parts_of(root, path)
        with directory(root, names[:-1], create=True) as dfd:
            _write_in(dfd, names[-1], data, mode, path)
        return
    try:
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise refused(path, f"cannot write into {path.parent}: {exc.strerror}") from None
    try:
        _write_in(dfd, path.name, data, mode, path)
    finally:
        os.close(dfd)


def _write_in(dfd: int, name: str, data: bytes, mode: int, shown: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(name, dir_fd=dfd).st_mode):
            raise refused(shown, "is a directory; refusing to replace it")
    for _ in range(100):
        tmp = f".{name[:60]}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise refused(shown, "no free temporary name")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)  # the rename itself survives a crash
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise


def make_dirs(root: Path, path: Path) -> Path:
    """``path`` (below ``root``) and the folders on the way, made without following a symlink."""
    with directory(root, parts_of(root, path), create=True):
        return path


def open_lock(root: Path, path: Path) -> int:
    """A lock file below ``root``, opened (or made) without following a symlink; the caller closes it."""
    names = parts_of(root, path)
    with directory(root, names[:-1], create=True) as dfd:
        try:
            return os.open(names[-1], os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
        except OSError as exc:
            why = "a symbolic link: refusing to follow it" if exc.errno == errno.ELOOP else exc.strerror
            raise refused(path, f"cannot open the lock: {why}") from None


def entries(root: Path, names: tuple[str, ...] | list[str]) -> list[tuple[str, os.stat_result]]:
    """The entries of a folder below ``root`` with their lstat (nothing followed); none if it is absent."""
    try:
        with directory(root, names) as dfd:
            return [(n, os.lstat(n, dir_fd=dfd)) for n in sorted(os.listdir(dfd))]
    except FileNotFoundError:
        return []


def regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def is_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)


def load_json(data: bytes, shown: Path | str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise refused(shown, f"not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise refused(shown, "nested too deeply") from None
    except ValueError as exc:
        raise refused(shown, f"not JSON ({exc})") from None


def read_model(root: Path, path: Path, model: type[M], limit: int = RECORD_MAX, shown: str | None = None) -> M:
    """A record the project wrote, read back: bounded, no symlink followed, parsed against its schema."""
    data = read_bounded(root, parts_of(root, path), limit)
    return parse_model(data, shown or str(path), model)


def parse_model(data: bytes, shown: str, model: type[M]) -> M:
    """JSON against a schema in strict mode: a string where a number belongs is refused, not converted."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refused(shown, f"not UTF-8 text (byte {exc.start})") from None
    try:
        return model.model_validate_json(data, strict=True)
    except ValidationError as exc:
        raise ConfigError(model_problems(exc, shown)) from None


def model_problems(exc: ValidationError, shown: str, limit: int = 5) -> list[Problem]:
    from .grammar import shown as show

    out = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(the whole file)"
        msg = err["msg"]
        if (
            "input" in err
            and err["type"] not in ("missing", "extra_forbidden")
            and not isinstance(err["input"], dict | list)
        ):
            got = err["input"]
            msg += f" (got {show(got) if isinstance(got, str | bytes) else json.dumps(got)})"
        out.append(Problem(shown, where, msg))
    more = len(exc.errors()) - limit
    if more > 0:
        out.append(Problem(shown, "", f"and {more} more problem(s)"))
    return out


def refuse_irregular(paths: list[Path], option: str) -> None:
    """Every target checked before the first is written: all of them or none (never half a set)."""
    bad = [p for p in paths if p.is_symlink() or (p.exists() and not p.is_file())]
    if bad:
        raise ConfigError(
            [Problem(option, "", f"{p} is not a regular file; refusing to replace it (nothing written)") for p in bad]
        )
