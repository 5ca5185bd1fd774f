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


def prepare(run_: Run, site: Site, rootfs: Path, *, name: str, ip: str, prefix: int, pubkey: str) -> Path:
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
