"""Process helpers of the harness: run a command, spawn a daemon, wait for it, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import OperationError

Say = Callable[[str], None]


def say_stdout(msg: str) -> None:
    print(msg, flush=True)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


def must(cmd: list[str], what: str) -> str:
    proc = run(cmd)
    if proc.returncode != 0:
        raise OperationError(f"{what} failed: {' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait(what: str, ok: Callable[[], bool], timeout: float, pid: int = 0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if pid and not alive(pid):
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log and log.is_file() else []
            raise OperationError(f"{what}: the process exited" + (f": {' | '.join(tail)}" if tail else ""))
        if time.monotonic() > deadline:
            raise OperationError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def spawn(cmd: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # A session of its own: the process outlives this command, and `down` finds it by pid.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    return proc.pid


def stop(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # systemd-nspawn turns this into a clean poweroff
    deadline = time.monotonic() + grace
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def cmdline(pid: int) -> bytes:
    """A process's command line, or b"" once it has gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def owned(pid: int, marker: str | Path) -> bool:
    """Whether ``pid`` is a live process of ours: its command line names ``marker`` (a run's folder, a
    conf path). A pid read back from a state file is never signalled on the file's word alone: a
    corrupted or planted file could name init, or the shell of whoever runs `down`."""
    return pid > 1 and alive(pid) and str(marker).encode() in cmdline(pid)


def all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != os.getpid()]
