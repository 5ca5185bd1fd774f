"""up, down and status of one run."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..catalog import SKUS
from ..errors import ConfigError, OperationError
from ..stackfile import Stack, display
from . import binfmt, hosts, kube, netns, rgw, services
from .proc import Say, alive, all_pids, cmdline, must, owned, port_open, run, say_stdout, stop, wait
from .rootfs import ensure_rootfs
from .run import HostState, Run, State, load_state, other_runs, save_state

TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "systemd-nspawn": "systemd-container",
    "apt-cacher-ng": "apt-cacher-ng",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def preflight() -> None:
    if os.geteuid() != 0:
        raise OperationError("test hosts need root (network namespaces, overlay mounts, systemd-nspawn)")
    missing = sorted(
        {pkg for tool, pkg in TOOLS.items() if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()}
    )
    if missing:
        raise OperationError(f"missing tools; install them with: apt-get install {' '.join(missing)}")


# How much longer an emulated host's boot may take than a native one's.
EMULATED_SLOWER = 5

INOTIFY = Path("/proc/sys/fs/inotify/max_user_instances")
# Each booted container's systemd holds inotify instances of root's; past the kernel's default of
# 128 the next container's init exits at boot (seen: the 20th of 32, "Exiting PID 1"). A container
# was seen to use about 6; 8 each leaves room for the host's own.
INOTIFY_PER_HOST = 8


def make_room_for(hosts: int, say: Say) -> None:
    """Raise fs.inotify.max_user_instances when this many more containers would exhaust it."""
    try:
        current = int(INOTIFY.read_text())
    except (OSError, ValueError):
        return
    needed = 128 + INOTIFY_PER_HOST * hosts
    if current < needed:
        INOTIFY.write_text(f"{needed}\n")
        say(f"fs.inotify.max_user_instances raised from {current} to {needed} for {hosts} containers")


def make_bridge(run_: Run, a: services.Addresses) -> None:
    ns = ["ip", "-n", run_.netns]
    if run([*ns, "link", "show", run_.bridge]).returncode != 0:
        must([*ns, "link", "add", run_.bridge, "type", "bridge"], "creating the bridge")
    if f" {a.gateway}/{a.prefix} " not in run([*ns, "-o", "-4", "addr", "show", "dev", run_.bridge]).stdout:
        must([*ns, "addr", "replace", f"{a.gateway}/{a.prefix}", "dev", run_.bridge], "addressing the bridge")
    must([*ns, "link", "set", run_.bridge, "up"], "bringing the bridge up")


def up(stack: Stack, root: Path, run_: Run, say: Say = say_stdout) -> State:
    preflight()
    site = stack.site
    a = services.addresses(site, display(stack.path, root))
    run_.dir.mkdir(parents=True, exist_ok=True)
    state = load_state(run_) or State(
        run=run_.id, site=site.code, checkout=str(root), gateway=a.gateway, prefix=a.prefix
    )
    state.gateway, state.prefix = a.gateway, a.prefix
    t0 = time.monotonic()
    say(f"run {run_.id}: namespace {run_.netns}, bridge {run_.bridge}, state {run_.dir}")
    netns.create(run_.netns)
    make_bridge(run_, a)
    save_state(run_, state)
    services.ensure_proxy_relay(run_, state, a, say)
    save_state(run_, state)
    services.ensure_artifacts(site, say)
    services.ensure_mirror(run_, state, a, say)
    save_state(run_, state)
    services.ensure_object_store(stack, root, run_, a.gateway, say)
    services.ensure_control_plane(stack, root, run_, a.gateway, say)
    # One rootfs per CPU architecture the site's SKUs have (GB200 trays are aarch64, DGX x86_64).
    machines = {n.hostname: SKUS[n.sku].cpu_arch for n in site.nodes}
    rootfs = {
        m: netns.inside(run_.netns, lambda m=m: ensure_rootfs(site, say, m)) for m in sorted(set(machines.values()))
    }
    state.rootfs = ",".join(str(r) for r in rootfs.values())
    pubkey = hosts.make_key(run_)
    running = sum(len(s.hosts) for r in other_runs(run_) if (s := _state_or_none(Run(r, run_.site))))
    make_room_for(len(site.nodes) + running, say)
    known = {h.name: h for h in state.hosts}
    all_hosts: list[HostState] = []
    started: list[HostState] = []
    t_hosts = time.monotonic()
    for node in site.nodes:
        h = known.get(node.hostname) or HostState(name=node.hostname, ip=str(node.management_ip))
        h.ip = str(node.management_ip)
        if not alive(h.pid):
            merged = hosts.prepare(
                run_,
                site,
                rootfs[machines[h.name]],
                name=h.name,
                ip=h.ip,
                prefix=a.prefix,
                pubkey=pubkey,
                emulated=machines[h.name] != binfmt.native(),
            )
            h.pid = netns.inside(run_.netns, lambda h=h, merged=merged: hosts.boot(run_, h.name, merged))
            started.append(h)
        all_hosts.append(h)
    state.hosts = all_hosts
    save_state(run_, state)
    hosts.write_ssh_config(run_, all_hosts)

    # An emulated (arm64) host's systemd and sshd run under qemu-user: its boot takes minutes, not seconds.
    def patience(h: HostState, native: float) -> float:
        return native if machines[h.name] == binfmt.native() else native * EMULATED_SLOWER

    def sshd_up() -> None:
        for h in started:
            log = run_.host_dir(h.name) / "console.log"
            wait(f"sshd on {h.name} ({h.ip})", lambda h=h: port_open(h.ip, 22), patience(h, 90), h.pid, log)

    netns.inside(run_.netns, sshd_up)
    for h in all_hosts:
        wait(f"an SSH login to {h.name}", lambda h=h: hosts.ssh_ready(run_, h.name), patience(h, 60))
    for h in all_hosts:
        say(f"host {h.name}: {h.ip} {machines[h.name]} {'started' if h in started else 'already up'} (pid {h.pid})")
    took, total = time.monotonic() - t_hosts, time.monotonic() - t0
    say(f"test hosts up: {len(all_hosts)} in {took:.1f} s (all steps {total:.1f} s)")
    say(f"  ssh -F {run_.ssh_config} {all_hosts[0].name}")
    say(f"  aifactory bootstrap {site.code} --ssh-config {run_.ssh_config}")
    say(f"  ip netns exec {run_.netns} aifactory storage check {site.code}   (the store is inside the run's network)")
    say(f"  KUBECONFIG={run_.kube_dir / 'kubeconfig'} ip netns exec {run_.netns} kubectl get nodes   (and the cluster)")
    return state


def _state_or_none(run_: Run) -> State | None:
    """Another run's state, for counting its hosts only: one that is not whole counts as none."""
    try:
        return load_state(run_)
    except ConfigError:
        return None


# -- teardown and status -------------------------------------------------------------------


def _helpers(run_: Run) -> list[int]:
    """This run's processes outside its namespace (the proxy relay, SSH masters), found by their command line."""
    markers = (run_.netns.encode(), str(run_.dir).encode())
    return [p for p in all_pids() if any(m in cmdline(p) for m in markers)]


def _inside_hosts(run_: Run) -> list[int]:
    """Processes whose root filesystem is one of this run's host overlays.

    A container's init outlives a systemd-nspawn that had to be killed (seen: its systemd, reparented
    to PID 1, kept the container's network namespace and so its veth, and the next `up` failed with
    "Failed to add new veth interfaces ... File exists"). Inside its own mount namespace its root
    reads as "/", so it is found by its root mount: an overlay whose upper directory is ours.
    """
    marker = f"upperdir={run_.dir}/"
    try:
        ours = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return []
    out = []
    for pid in all_pids():
        proc = Path("/proc") / str(pid)
        try:
            if os.readlink(proc / "ns" / "mnt") == ours:
                continue
            lines = (proc / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        root_line = next((line for line in lines if line.split(" ")[4:5] == ["/"]), "")
        if marker in root_line:
            out.append(pid)
    return out


def _mounts(run_: Run) -> list[str]:
    prefix = str(run_.dir) + "/"
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _live_runs(run_: Run) -> list[str]:
    """The other runs alive on this machine: by their namespaces, not by a state folder (a run with another
    AIFACTORY_STATE_DIR, or a test's, still uses the one proxy; stopping it under them broke their apt)."""
    return [r for r in netns.live_runs() if r != run_.id]


def down(run_: Run, say: Say = say_stdout) -> list[str]:
    """Stop and remove everything of this run, found from its state and, after a crash, by looking."""
    preflight()
    removed: list[str] = []
    try:
        state = load_state(run_)
    except ConfigError as exc:  # down must still clean up: everything is also found by looking
        say(f"warning: {exc.problems[0]}; ignoring it and finding the run's processes by looking")
        state = None
    if run_.ssh_config.is_file() and state:
        for h in state.hosts:
            run(["ssh", "-F", str(run_.ssh_config), "-O", "exit", h.name])
    in_ns = netns.pids(run_.netns)
    nspawn = [p for p in in_ns if b"systemd-nspawn" in cmdline(p)]
    if state:
        nspawn += [h.pid for h in state.hosts if owned(h.pid, run_.dir) and h.pid not in nspawn]
    if nspawn:
        stop(nspawn, grace=30)
        removed.append(f"{len(nspawn)} host(s) powered off")
    orphans = _inside_hosts(run_)
    if orphans:
        stop(orphans, grace=5)
        removed.append(f"{len(orphans)} process(es) left inside the hosts stopped")
    if rgw.stop(run_.rgw_dir):
        removed.append("object store (Ceph RGW) stopped")
    if kube.stop(run_.kube_dir):
        removed.append("Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) stopped")
    rest = sorted(
        {*netns.pids(run_.netns), *_helpers(run_)}
        | ({state.relay_pid} if state and owned(state.relay_pid, run_.netns) else set())
    )
    if rest:
        stop(rest, grace=5)
        removed.append(f"{len(rest)} helper process(es) stopped (proxy relay, artifact mirror, SSH)")
    for point in _mounts(run_):
        if run(["umount", point]).returncode != 0:
            must(["umount", "-l", point], f"unmounting {point}")
        removed.append(f"unmounted {point}")
    if netns.delete(run_.netns):
        removed.append(f"namespace {run_.netns} deleted (with bridge {run_.bridge})")
    if run_.dir.exists():
        shutil.rmtree(run_.dir)
        removed.append(f"removed {run_.dir}")
    services.release_proxy(_live_runs(run_), removed.append)
    for line in removed or [f"run {run_.id}: nothing to remove"]:
        say(line)
    return removed


@dataclass(frozen=True)
class Status:
    namespace: bool
    relay: bool
    mirror: bool
    store: bool
    cluster: bool
    hosts: list[tuple[str, str, bool, bool]]  # name, ip, running, ssh port open
    mounts: list[str]
    processes: list[int]

    @property
    def anything(self) -> bool:
        return self.namespace or bool(self.mounts) or bool(self.processes)


def status(run_: Run) -> Status:
    state = load_state(run_)
    present = netns.exists(run_.netns)
    hosts_ = []
    if state and present:
        probe = {h.name: netns.inside(run_.netns, lambda h=h: port_open(h.ip, 22, 0.3)) for h in state.hosts}
        hosts_ = [(h.name, h.ip, alive(h.pid), probe[h.name]) for h in state.hosts]
    elif state:
        hosts_ = [(h.name, h.ip, alive(h.pid), False) for h in state.hosts]
    return Status(
        namespace=present,
        relay=bool(state and alive(state.relay_pid)),
        mirror=bool(state and alive(state.mirror_pid)),
        store=rgw.load(run_.rgw_dir) is not None,
        cluster=kube.load(run_.kube_dir) is not None,
        hosts=hosts_,
        mounts=_mounts(run_),
        processes=sorted({*netns.pids(run_.netns), *_helpers(run_), *_inside_hosts(run_)}),
    )


def ssh(run_: Run, host: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run a command on a host of this run, through the run's SSH settings."""
    return run(["ssh", "-F", str(run_.ssh_config), host, command])
