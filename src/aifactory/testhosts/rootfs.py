"""The hosts' root filesystems: Debian 12 built once per CPU architecture with mmdebstrap, shared by every run.

The native one (amd64 here) plays DGX nodes; an arm64 one, built and run under qemu-user-static,
plays Grace compute trays (GB200). Under emulation every maintainer script runs through qemu,
so the arm64 build takes several times the native one's: it is cached like the other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from hashlib import sha256
from pathlib import Path

from ..caches import CACHE_ROOT
from ..errors import OperationError
from ..model import Site
from . import binfmt
from .proc import Say

SUITE = "bookworm"
PACKAGES = (
    "python3",
    "python3-apt",
    "openssh-server",
    "sudo",
    "iproute2",
    "systemd-sysv",
    "dbus",
    "ca-certificates",
    "procps",
)


def rootfs_dir(debian_mirror: str, machine: str | None = None) -> Path:
    """The cached rootfs of an architecture; the native one keeps the name it always had."""
    machine = machine or binfmt.native()
    if machine == binfmt.native():
        key = sha256(f"{SUITE}|{','.join(PACKAGES)}|{debian_mirror}|v1".encode()).hexdigest()[:12]
        return CACHE_ROOT / "rootfs" / f"{SUITE}-{key}"
    arch = binfmt.debian_arch(machine)
    key = sha256(f"{SUITE}|{arch}|{','.join(PACKAGES)}|{debian_mirror}|v1".encode()).hexdigest()[:12]
    return CACHE_ROOT / "rootfs" / f"{SUITE}-{arch}-{key}"


def ensure_rootfs(site: Site, say: Say, machine: str | None = None) -> Path:
    """The cached rootfs of ``machine`` (default: this one's), built first if absent.

    Called inside the run's namespace (the proxy's address).
    """
    from .services import locked

    machine = machine or binfmt.native()
    target = rootfs_dir(site.mirrors.debian.url, machine)
    foreign = machine != binfmt.native()
    if foreign:
        binfmt.ensure(machine, say)
    arch = binfmt.debian_arch(machine)
    # A run beside this one waits for the build rather than starting its own; the arm64 build (minutes)
    # has its own lock, so it never holds up a run that needs only the native rootfs.
    with locked("rootfs" if not foreign else f"rootfs-{arch}"):
        if (target / "etc" / "debian_version").is_file():
            say(f"rootfs: cached {target}")
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        say(
            f"rootfs: building Debian {SUITE} {arch} with mmdebstrap through {site.mirrors.debian.url}"
            + (" (under qemu-user-static: several minutes)" if foreign else "")
        )
        start = time.monotonic()
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            f"--architectures={arch}",
            f"--include={','.join(PACKAGES)}",
            '--customize-hook=chroot "$1" systemctl enable ssh systemd-networkd',
            '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*',
            SUITE,
            str(building),
            f"deb {site.mirrors.debian.url} {SUITE} main",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(("I: ", "E: ", "W: ")):
                say(f"  mmdebstrap {line.rstrip()}")
        if proc.wait() != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise OperationError("mmdebstrap failed (see its output above)")
        # apt's cache_valid_time would otherwise trust the empty lists and skip the first update.
        os.utime(building / "var" / "lib" / "apt" / "lists", (0, 0))
        building.rename(target)
        say(f"rootfs: built in {time.monotonic() - start:.1f} s")
        return target
