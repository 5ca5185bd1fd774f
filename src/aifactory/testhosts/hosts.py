"""The hosts themselves: an overlay of the rootfs each, booted with systemd-nspawn on the run's bridge."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

from ..fsutil import directory, write_atomic
from ..model import Site
from .proc import must, run, spawn
from .run import HostState, Run


def mounted(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())


# Under qemu-user (a foreign-architecture host) two parts of systemd cannot run, seen on qemu 7.2
# with systemd 252: systemd-networkd exits with "Could not setup manager: Protocol not supported"
# (qemu-user does not translate the generic netlink it opens), and every unit with LoadCredential=
# fails "at step CREDENTIALS ... Invalid argument". The harness gives such a host its address with
# iproute2 (route netlink, which qemu does translate) and empties those units' credential lists;
# nothing the roles manage is touched.
_QEMU_CREDENTIAL_UNITS = (
    "systemd-sysctl.service",
    "systemd-sysusers.service",
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
)


def _address_unit(ip: str, prefix: int) -> str:
    return (
        "[Unit]\nDescription=host0 address (test harness: systemd-networkd cannot run under qemu-user)\n"
        "DefaultDependencies=no\nBefore=network.target ssh.service\n\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        f"ExecStart=/sbin/ip addr replace {ip}/{prefix} dev host0\nExecStart=/sbin/ip link set host0 up\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def _link(root: Path, names: tuple[str, ...], target: str) -> None:
    """A symlink below ``root`` (a unit enabled or masked), made without following one on the way."""
    with directory(root, names[:-1], create=True) as fd:
        try:
            if os.readlink(names[-1], dir_fd=fd) == target:
                return
            os.unlink(names[-1], dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError:  # a file or folder where the link belongs: a host's own doing, replaced
            os.unlink(names[-1], dir_fd=fd)
        os.symlink(target, names[-1], dir_fd=fd)


def prepare_emulated(merged: Path, ip: str, prefix: int) -> None:
    """What an emulated host needs in place of systemd-networkd and the credential steps (see above)."""
    units = ("etc", "systemd", "system")
    write_atomic(merged.joinpath(*units, "aifactory-host0.service"), _address_unit(ip, prefix), root=merged)
    _link(merged, (*units, "multi-user.target.wants", "aifactory-host0.service"), "../aifactory-host0.service")
    for unit in ("systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service"):
        _link(merged, (*units, unit), "/dev/null")
    for unit in _QEMU_CREDENTIAL_UNITS:
        write_atomic(
            merged.joinpath(*units, f"{unit}.d", "aifactory-qemu.conf"),
            "# test harness: credentials cannot be set up under qemu-user\n[Service]\nLoadCredential=\n",
            root=merged,
        )


def prepare(
    run_: Run, site: Site, rootfs: Path, *, name: str, ip: str, prefix: int, pubkey: str, emulated: bool = False
) -> Path:
    d = run_.host_dir(name)
    upper, work, merged = d / "upper", d / "work", d / "merged"
    if not mounted(merged):
        for p in (upper, work, merged):
            shutil.rmtree(p, ignore_errors=True)
            p.mkdir(parents=True)
        must(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={rootfs},upperdir={upper},workdir={work}",
                str(merged),
            ],
            f"mounting {name}'s overlay",
        )
    # The merged tree is the host's own file system: once it has booted, anything in it may be a
    # symlink that the host's root planted (an absolute one resolves against this machine's /).
    # Every file is written below `merged` without following one (fsutil.write_atomic with a root).
    etc = merged / "etc"

    def put(path: Path, text: str, mode: int = 0o644) -> None:
        write_atomic(path, text, mode, root=merged)

    put(etc / "hostname", name + "\n")
    put(etc / "machine-id", uuid.uuid5(uuid.NAMESPACE_DNS, f"{run_.id}.{site.code}.{name}").hex + "\n")
    peers = "".join(f"{n.management_ip} {n.fqdn} {n.hostname}\n" for n in site.nodes)
    put(etc / "hosts", f"127.0.0.1 localhost\n127.0.1.1 {name}\n{peers}")
    put(etc / "resolv.conf", "# test host: no resolver; mirrors are addressed by IP\n")
    # A throwaway host need not survive a power cut mid-install: dpkg skips its fsync per file
    # (dpkg --force-unsafe-io, dpkg(1)). Set here, in the harness's overlay, never by the roles.
    put(etc / "dpkg" / "dpkg.cfg.d" / "aifactory-test-host-unsafe-io", "force-unsafe-io\n")
    put(
        etc / "systemd" / "network" / "10-host0.network",
        f"[Match]\nName=host0\n\n[Network]\nAddress={ip}/{prefix}\nLinkLocalAddressing=no\n",
    )
    with directory(merged, ("root", ".ssh"), create=True) as fd:
        os.fchmod(fd, 0o700)
    put(merged / "root" / ".ssh" / "authorized_keys", pubkey, 0o600)
    if emulated:
        prepare_emulated(merged, ip, prefix)
    if not list((etc / "ssh").glob("ssh_host_*_key")):
        must(["ssh-keygen", "-A", "-f", str(merged)], f"making {name}'s host keys")
    return merged


def boot(run_: Run, name: str, merged: Path) -> int:
    """systemd-nspawn on the run's bridge. Called inside the run's namespace: the veth is made there."""
    return spawn(
        [
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            "--quiet",
            "-D",
            str(merged),
            "-b",
            f"--machine={name}",
            f"--network-bridge={run_.bridge}",
            "--resolv-conf=off",
            "--console=passive",
        ],
        run_.host_dir(name) / "console.log",
    )


def write_ssh_config(run_: Run, hosts: list[HostState]) -> None:
    """SSH settings for bootstrap and verify: each host by name or address, reached inside the run's namespace."""
    relay = f"ip netns exec {run_.netns} {sys.executable} -m aifactory.testhosts.relay stdio %h %p"
    blocks = [
        f"Host {h.name} {h.ip}\n  HostName {h.ip}\n  User root\n  IdentityFile {run_.key}\n"
        "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        f"  ProxyCommand {relay}\n"
        f"  ControlMaster auto\n  ControlPath {run_.dir}/cm-%C\n  ControlPersist 300s\n"
        for h in hosts
    ]
    write_atomic(run_.ssh_config, "\n".join(blocks), root=run_.dir.parent)


def ssh_ready(run_: Run, host: str) -> bool:
    probe = "systemctl is-system-running --wait >/dev/null 2>&1; true"
    cmd = ["ssh", "-F", str(run_.ssh_config), "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", host, probe]
    return run(cmd).returncode == 0


def make_key(run_: Run) -> str:
    if not run_.key.is_file():
        must(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"aifactory-testhosts-{run_.id}",
                "-f",
                str(run_.key),
            ],
            "making the run's SSH key",
        )
    return run_.key.with_suffix(".pub").read_text()
