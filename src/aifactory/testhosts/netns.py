"""A network namespace per run: the lab's declared addresses, private to one run.

Each run's bridge, mirrors, object store and hosts live in a namespace of their own, so two
checkouts (or CI beside a developer's lab) can both give the lab site its declared 172.29.0.0/24
without meeting. The controller reaches into it in three ways: SSH through a ProxyCommand that
opens the connection inside (``relay stdio``), a listener inside that connects out to a host-side
service (``relay listen``), and ``inside(ns, fn)``, which runs a call on a thread that has joined
the namespace: the sockets it opens and the processes it starts are in the run's network.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import OperationError
from .proc import must, run

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


PREFIX = "aifactory-"
RUN_NETNS = re.compile(r"aifactory-[0-9a-f]{8}", re.ASCII)


def setns(fd: int) -> None:
    """Join the network namespace open on ``fd`` (this thread only; os.setns arrives in Python 3.12)."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OperationError(f"setns: {os.strerror(err)}")


def path(name: str) -> Path:
    return NETNS_DIR / name


def live_runs() -> list[str]:
    """Ids of every run with a namespace on this machine, whatever state folder it keeps (`ip netns` names
    them aifactory-<id> under /run/netns): what the machine's shared proxy serves."""
    base = path("x").parent
    if not base.is_dir():
        return []
    return sorted(p.name.removeprefix(PREFIX) for p in base.iterdir() if RUN_NETNS.fullmatch(p.name))


def exists(name: str) -> bool:
    return path(name).exists()


def create(name: str) -> None:
    if not exists(name):
        must(["ip", "netns", "add", name], f"creating the network namespace {name}")
    must(["ip", "-n", name, "link", "set", "lo", "up"], f"bringing up loopback in {name}")


def delete(name: str) -> bool:
    if not exists(name):
        return False
    must(["ip", "netns", "del", name], f"deleting the network namespace {name}")
    return True


def pids(name: str) -> list[int]:
    if not exists(name):
        return []
    out = run(["ip", "netns", "pids", name]).stdout
    return sorted(int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid())


def inside(name: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` on a thread that has joined the namespace; its result or its exception comes back."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(path(name), os.O_RDONLY)
            try:
                setns(fd)
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
