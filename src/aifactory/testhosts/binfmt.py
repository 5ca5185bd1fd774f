"""Foreign-architecture test hosts: arm64 userlands run here under qemu-user-static through binfmt_misc.

A GB200 compute tray is an arm64 machine. Its test host is an arm64 Debian rootfs booted with
systemd-nspawn like the others; the kernel hands every aarch64 executable to qemu's static
interpreter (Debian's qemu-user-static, registered by binfmt-support). The registration must carry
the F flag ("fix binary": the kernel opens the interpreter when it is registered), because inside
a container the interpreter's path does not exist. Registering is machine-wide: it is said, and
it is what `apt-get install qemu-user-static binfmt-support` does on a desktop anyway.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

from ..errors import OperationError
from .proc import Say, must, run

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# CPU architecture as the node reports it (uname -m) -> Debian's name for it (mmdebstrap, dpkg).
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# binfmt_misc entry of each foreign architecture (qemu-user-static's binfmt-support format).
QEMU_ENTRY = {"aarch64": "qemu-aarch64"}
PACKAGES = "qemu-user-static binfmt-support arch-test"


def native() -> str:
    return platform.machine()


def debian_arch(machine: str) -> str:
    try:
        return DEBIAN_ARCH[machine]
    except KeyError:
        raise OperationError(f"test hosts cannot play a {machine} node (known: {', '.join(DEBIAN_ARCH)})") from None


def entry_state(machine: str) -> tuple[bool, str]:
    """(enabled, flags) of the architecture's binfmt_misc entry; (False, "") when it is not registered."""
    entry = BINFMT / QEMU_ENTRY[machine]
    try:
        lines = entry.read_text().splitlines()
    except OSError:
        return False, ""
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    return bool(lines) and lines[0] == "enabled", flags


def ensure(machine: str, say: Say) -> None:
    """Make this machine run ``machine`` executables: binfmt_misc mounted, qemu's entry enabled with F."""
    if machine == native():
        return
    debian_arch(machine)
    if machine not in QEMU_ENTRY:
        raise OperationError(f"no qemu-user entry is known for {machine}")
    if not (BINFMT / "status").exists():
        # Seen on a fresh machine: binfmt_misc not mounted, so no registration can exist.
        must(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "mounting binfmt_misc")
        say(f"binfmt: mounted binfmt_misc on {BINFMT}")
    enabled, flags = entry_state(machine)
    if not enabled:
        if not shutil.which("update-binfmts") or not Path(f"/usr/share/binfmts/{QEMU_ENTRY[machine]}").exists():
            raise OperationError(
                f"{machine} test hosts need qemu-user-static and binfmt-support: apt-get install {PACKAGES}"
            )
        proc = run(["update-binfmts", "--enable", QEMU_ENTRY[machine]])
        enabled, flags = entry_state(machine)
        if not enabled:
            said = (proc.stderr or proc.stdout).strip()[-200:]
            raise OperationError(f"could not register {QEMU_ENTRY[machine]} with binfmt_misc: {said}")
        say(f"binfmt: registered {QEMU_ENTRY[machine]} ({machine} executables run under qemu-user-static)")
    if "F" not in flags:
        raise OperationError(
            f"binfmt_misc's {QEMU_ENTRY[machine]} entry lacks the F flag (flags: {flags or 'none'}): inside a test "
            "host the interpreter's path does not exist; re-register it with qemu-user-static's binfmt-support file"
        )
