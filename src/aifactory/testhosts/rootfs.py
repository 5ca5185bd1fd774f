"""The hosts' root filesystem: Debian 12 built once with mmdebstrap, shared by every run as a cache."""

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


def rootfs_dir(debian_mirror: str) -> Path:
    key = sha256(f"{SUITE}|{','.join(PACKAGES)}|{debian_mirror}|v1".encode()).hexdigest()[:12]
    return CACHE_ROOT / "rootfs" / f"{SUITE}-{key}"


def ensure_rootfs(site: Site, say: Say) -> Path:
    """The cached rootfs, built first if absent. Called inside the run's namespace (the proxy's address)."""
    from .services import locked

    target = rootfs_dir(site.mirrors.debian.url)
    with locked("rootfs"):  # a run beside this one waits for the build rather than starting its own
        if (target / "etc" / "debian_version").is_file():
            say(f"rootfs: cached {target}")
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        say(f"rootfs: building Debian {SUITE} with mmdebstrap through {site.mirrors.debian.url}")
        start = time.monotonic()
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
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
