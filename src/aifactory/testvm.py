"""Test hosts for the lab site: systemd-nspawn machines on a private bridge.

Everything comes from the site model: one host per declared node, with its hostname and
management address; the bridge takes the management gateway; the package proxy and the
artifact mirror listen on the addresses the site's mirrors declare. So the lab site is
provisioned exactly as a sovereign site is: nodes reach packages only through in-country
mirrors, never the internet (no forwarding, no NAT: ip_forward stays 0).

    up      build (or reuse) a Debian 12 rootfs with mmdebstrap through the package proxy,
            then per host: an overlayfs copy, a hostname, fresh SSH host keys, the run's
            public key, a static address, and `systemd-nspawn -b` on the bridge, which gives
            it a network namespace and a veth pair of its own
    down    stops and removes every process, mount, veth and bridge `up` made, found from
            the state file and, after a crash, by looking for them
    status  lists them

Caches (rootfs, packages, artifacts) live under /var/cache/aifactory and survive `down`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError, OperationError, Problem
from .model import Site
from .stackfile import SITE_KEY, Stack, display, site_name_problem

STATE_ROOT = Path(os.environ.get("AIFACTORY_STATE_DIR", "/var/lib/aifactory/testvm"))
CACHE_ROOT = Path(os.environ.get("AIFACTORY_CACHE_DIR", "/var/cache/aifactory"))
SUITE = "bookworm"
ROOTFS_PACKAGES = (
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
# Debian's archive, which the package proxy serves to the hosts.
UPSTREAM_DEBIAN = "http://deb.debian.org/debian/"
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "systemd-nspawn": "systemd-container",
    "apt-cacher-ng": "apt-cacher-ng",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}

Say = Callable[[str], None]


def _say(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class HostState:
    name: str
    ip: str
    pid: int = 0


@dataclass
class State:
    site: str
    bridge: str
    gateway: str
    prefix: int
    hosts: list[HostState] = field(default_factory=list)
    proxy_pid: int = 0
    mirror_pid: int = 0
    rootfs: str = ""


@dataclass(frozen=True)
class Layout:
    """Where a site's test hosts keep their state, all derived from the site code."""

    site: str

    def __post_init__(self) -> None:
        # The site code names a folder that `down` removes as root and a bridge it deletes: it is
        # checked before either is touched, and the folder must sit directly in the state root.
        problem = site_name_problem(self.site)
        if problem:
            raise ConfigError([Problem("--site", "", problem)])
        if (STATE_ROOT / self.site).resolve().parent != STATE_ROOT.resolve():
            raise ConfigError([Problem("--site", "", f"{self.site} does not name a folder in {STATE_ROOT}")])

    @property
    def dir(self) -> Path:
        return STATE_ROOT / self.site

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    def host_dir(self, name: str) -> Path:
        return self.dir / "hosts" / name

    @property
    def proxy_conf(self) -> Path:
        return self.dir / "apt-cacher-ng"

    @property
    def bridge(self) -> str:
        # Site codes are at most 12 characters: "af-" + code fits IFNAMSIZ and never collides.
        return f"af-{self.site}"


def plan_hosts(site: Site, shown: str) -> tuple[str, int, int, int]:
    """Gateway, prefix, proxy port and mirror port, checked against the site's own mirrors."""
    mgmt = site.network.management
    if mgmt.gateway is None:
        raise ConfigError(
            [
                Problem(
                    shown,
                    f"{SITE_KEY}.network.management.gateway",
                    "test hosts need a gateway: the bridge takes that address",
                )
            ]
        )
    gw = str(mgmt.gateway)
    ports = []
    for field_name, url in (("debian", site.mirrors.debian.url), ("artifacts", site.mirrors.artifacts.url)):
        parts = urlsplit(url)
        if parts.hostname != gw or parts.scheme != "http":
            raise ConfigError(
                [
                    Problem(
                        shown,
                        f"{SITE_KEY}.mirrors.{field_name}.url",
                        f"test hosts reach mirrors only on the bridge: must be http://{gw}:PORT/...",
                    )
                ]
            )
        ports.append(parts.port or 80)
    if not urlsplit(site.mirrors.debian.url).path.startswith("/deb.debian.org/debian"):
        raise ConfigError(
            [
                Problem(
                    shown,
                    f"{SITE_KEY}.mirrors.debian.url",
                    "the lab package proxy serves Debian at /deb.debian.org/debian",
                )
            ]
        )
    return gw, mgmt.cidr.prefixlen, ports[0], ports[1]


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


def _must(cmd: list[str], what: str) -> str:
    proc = _run(cmd)
    if proc.returncode != 0:
        raise OperationError(f"{what} failed: {' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout


def preflight() -> None:
    if os.geteuid() != 0:
        raise OperationError("test hosts need root (network namespaces, overlay mounts, systemd-nspawn)")
    missing = sorted(
        {pkg for tool, pkg in TOOLS.items() if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()}
    )
    if missing:
        raise OperationError(f"missing tools; install them with: apt-get install {' '.join(missing)}")


def _alive(pid: int) -> bool:
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


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(what: str, ok: Callable[[], bool], timeout: float, pid: int = 0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if pid and not _alive(pid):
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log and log.is_file() else []
            raise OperationError(f"{what}: the process exited" + (f": {' | '.join(tail)}" if tail else ""))
        if time.monotonic() > deadline:
            raise OperationError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _spawn(cmd: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # A session of its own: the process outlives this command, and `down` finds it by pid.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    return proc.pid


def load_state(layout: Layout) -> State | None:
    try:
        raw = json.loads(layout.state_file.read_text())
        raw["hosts"] = [HostState(**h) for h in raw.get("hosts", [])]
        return State(**raw)
    except (OSError, ValueError, TypeError):
        return None


def save_state(layout: Layout, state: State) -> None:
    layout.dir.mkdir(parents=True, exist_ok=True)
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(layout.state_file)


# -- the bridge, the package proxy and the artifact mirror ---------------------------------


def ensure_bridge(name: str, gateway: str, prefix: int) -> None:
    if _run(["ip", "link", "show", name]).returncode != 0:
        _must(["ip", "link", "add", name, "type", "bridge"], "creating the bridge")
    addrs = _run(["ip", "-o", "-4", "addr", "show", "dev", name]).stdout
    if f" {gateway}/{prefix} " not in addrs:
        _must(["ip", "addr", "replace", f"{gateway}/{prefix}", "dev", name], "addressing the bridge")
    _must(["ip", "link", "set", name, "up"], "bringing the bridge up")


def ensure_proxy(layout: Layout, state: State, port: int, say: Say) -> None:
    if _alive(state.proxy_pid) and _port_open(state.gateway, port):
        return
    conf = layout.proxy_conf
    conf.mkdir(parents=True, exist_ok=True)
    cache = CACHE_ROOT / "apt-cacher-ng"
    logs = layout.dir / "apt-cacher-ng-log"
    for d in (cache, logs):
        d.mkdir(parents=True, exist_ok=True)
    # Remap requests for deb.debian.org/debian to one backend; the stock list points at
    # mirrors these machines cannot reach.
    (conf / "acng.conf").write_text(
        f"CacheDir: {cache}\nLogDir: {logs}\nSupportDir: /usr/lib/apt-cacher-ng\n"
        f"Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian\n"
        f"Port: {port}\nBindAddress: {state.gateway}\nExThreshold: 4\n"
    )
    (conf / "backends_debian").write_text(UPSTREAM_DEBIAN + "\n")
    log = layout.dir / "apt-cacher-ng.out"
    state.proxy_pid = _spawn(
        ["/usr/sbin/apt-cacher-ng", "-c", str(conf), "ForeGround=1", f"PidFile={layout.dir / 'apt-cacher-ng.pid'}"], log
    )
    _wait(
        f"the package proxy on {state.gateway}:{port}",
        lambda: _port_open(state.gateway, port),
        20,
        state.proxy_pid,
        log,
    )
    say(f"package proxy: apt-cacher-ng on {state.gateway}:{port} (cache {cache})")


def artifact_root() -> Path:
    return CACHE_ROOT / "artifacts"


def ensure_artifacts(site: Site, say: Say) -> None:
    """Stock the artifact mirror with what the site's roles fetch from it (NCCL's redistributable)."""
    g = site.gpu_stack
    major = g.nccl_cuda.split(".")[0]
    prefix = urlsplit(site.mirrors.artifacts.url).path.strip("/")
    target = artifact_root() / prefix / "nccl" / f"nvidia-nccl-cu{major}-{g.nccl_version}.whl"
    if target.is_file():
        return
    say(f"artifact mirror: fetching NCCL {g.nccl_version} for CUDA {major} (nvidia-nccl-cu{major}) from PyPI")
    with tempfile.TemporaryDirectory() as tmp:
        _must(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                "manylinux2014_x86_64",
                "--python-version",
                "3.11",
                f"nvidia-nccl-cu{major}=={g.nccl_version}",
                "-d",
                tmp,
            ],
            "downloading the NCCL redistributable",
        )
        (wheel,) = Path(tmp).glob("*.whl")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(wheel), target)


def ensure_mirror(layout: Layout, state: State, port: int, say: Say) -> None:
    if _alive(state.mirror_pid) and _port_open(state.gateway, port):
        return
    root = artifact_root()
    root.mkdir(parents=True, exist_ok=True)
    log = layout.dir / "artifact-mirror.out"
    state.mirror_pid = _spawn(
        [sys.executable, "-m", "http.server", "--bind", state.gateway, "--directory", str(root), str(port)], log
    )
    _wait(
        f"the artifact mirror on {state.gateway}:{port}",
        lambda: _port_open(state.gateway, port),
        20,
        state.mirror_pid,
        log,
    )
    say(f"artifact mirror: http://{state.gateway}:{port}/ serving {root}")


# -- the root filesystem -------------------------------------------------------------------


def lab_passphrase_env(root: Path, site_code: str) -> dict[str, str]:
    """The environment with the stack passphrase: the caller's, else the lab's public file for the lab."""
    env = dict(os.environ)
    if site_code == "lab" and not ({"PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"} & set(env)):
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(root / "stacks" / "lab.passphrase")
    return env


def ensure_object_store(stack: Stack, root: Path, layout: Layout, gateway: str, say: Say) -> None:
    """The site's object store as a one-node Ceph RGW on the bridge, when the stack puts it there.

    Its zonegroup's api_name is the store's region (RGW then refuses any other location), and its
    owner account has the keys the stack holds, so the stack reaches it as it reaches a real store.
    """
    from . import rgw
    from .storage.site import credentials

    store = stack.site.storage.object_store
    url = urlsplit(store.url)
    if url.hostname != gateway:
        say(f"object store: {store.url} is not on the bridge; the lab does not start one")
        return
    directory = layout.dir / "rgw"
    if rgw.load(directory) is not None:
        say(f"object store: Ceph RGW on {gateway}:{url.port or 80} already up")
        return
    creds = credentials(stack, lab_passphrase_env(root, stack.site.code))
    rgw.start(
        directory,
        region=store.region,
        users=[rgw.User(f"{stack.site.code}-owner", creds.access_key_id, creds.secret_access_key)],
        address=gateway,
        port=url.port or 80,
        say=lambda m: say(f"object store: {m}"),
    )


def rootfs_dir(debian_mirror: str) -> Path:
    key = sha256(f"{SUITE}|{','.join(ROOTFS_PACKAGES)}|{debian_mirror}|v1".encode()).hexdigest()[:12]
    return CACHE_ROOT / "rootfs" / f"{SUITE}-{key}"


def ensure_rootfs(site: Site, say: Say) -> Path:
    target = rootfs_dir(site.mirrors.debian.url)
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
        f"--include={','.join(ROOTFS_PACKAGES)}",
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


# -- hosts ---------------------------------------------------------------------------------


def _mounted(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())


def prepare_host(layout: Layout, site: Site, rootfs: Path, *, name: str, ip: str, prefix: int, pubkey: str) -> Path:
    d = layout.host_dir(name)
    upper, work, merged = d / "upper", d / "work", d / "merged"
    if not _mounted(merged):
        for p in (upper, work, merged):
            shutil.rmtree(p, ignore_errors=True)
            p.mkdir(parents=True)
        _must(
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
    etc = merged / "etc"
    (etc / "hostname").write_text(name + "\n")
    (etc / "machine-id").write_text(uuid.uuid5(uuid.NAMESPACE_DNS, f"{site.code}.{name}").hex + "\n")
    peers = "".join(f"{n.management_ip} {n.fqdn} {n.hostname}\n" for n in site.nodes)
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {name}\n{peers}")
    (etc / "resolv.conf").write_text("# test host: no resolver; mirrors are addressed by IP\n")
    # A throwaway host need not survive a power cut mid-install: dpkg skips its fsync per file
    # (dpkg --force-unsafe-io, dpkg(1)). Set here, in the harness's overlay, never by the roles.
    dpkg_cfg = etc / "dpkg" / "dpkg.cfg.d"
    dpkg_cfg.mkdir(parents=True, exist_ok=True)
    (dpkg_cfg / "aifactory-test-host-unsafe-io").write_text("force-unsafe-io\n")
    net = etc / "systemd" / "network"
    net.mkdir(parents=True, exist_ok=True)
    (net / "10-host0.network").write_text(
        f"[Match]\nName=host0\n\n[Network]\nAddress={ip}/{prefix}\nLinkLocalAddressing=no\n"
    )
    ssh = merged / "root" / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(pubkey)
    os.chmod(ssh / "authorized_keys", 0o600)
    if not list((etc / "ssh").glob("ssh_host_*_key")):
        _must(["ssh-keygen", "-A", "-f", str(merged)], f"making {name}'s host keys")
    return merged


def write_ssh_config(layout: Layout, hosts: list[HostState]) -> None:
    blocks = []
    for h in hosts:
        blocks.append(
            f"Host {h.name} {h.ip}\n  HostName {h.ip}\n  User root\n  IdentityFile {layout.key}\n"
            "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            f"  ControlMaster auto\n  ControlPath {layout.dir}/cm-%C\n  ControlPersist 300s\n"
        )
    layout.ssh_config.write_text("\n".join(blocks))


def _ssh_ready(layout: Layout, host: str) -> bool:
    return (
        _run(
            [
                "ssh",
                "-F",
                str(layout.ssh_config),
                "-o",
                "ConnectTimeout=2",
                "-o",
                "BatchMode=yes",
                host,
                "systemctl is-system-running --wait >/dev/null 2>&1; true",
            ]
        ).returncode
        == 0
    )


def up(stack: Stack, root: Path, say: Say = _say) -> State:
    preflight()
    site = stack.site
    gw, prefix, proxy_port, mirror_port = plan_hosts(site, display(stack.path, root))
    layout = Layout(site.code)
    layout.dir.mkdir(parents=True, exist_ok=True)
    state = load_state(layout) or State(site.code, layout.bridge, gw, prefix)
    state.gateway, state.prefix, state.bridge = gw, prefix, layout.bridge
    t0 = time.monotonic()
    ensure_bridge(layout.bridge, gw, prefix)
    ensure_proxy(layout, state, proxy_port, say)
    save_state(layout, state)
    ensure_artifacts(site, say)
    ensure_mirror(layout, state, mirror_port, say)
    save_state(layout, state)
    ensure_object_store(stack, root, layout, gw, say)
    rootfs = ensure_rootfs(site, say)
    state.rootfs = str(rootfs)
    if not layout.key.is_file():
        _must(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"aifactory-testvm-{site.code}",
                "-f",
                str(layout.key),
            ],
            "making the run's SSH key",
        )
    pubkey = layout.key.with_suffix(".pub").read_text()
    known = {h.name: h for h in state.hosts}
    hosts: list[HostState] = []
    started: list[HostState] = []
    t_hosts = time.monotonic()
    for node in site.nodes:
        h = known.get(node.hostname) or HostState(node.hostname, str(node.management_ip))
        h.ip = str(node.management_ip)
        if not _alive(h.pid):
            merged = prepare_host(layout, site, rootfs, name=h.name, ip=h.ip, prefix=prefix, pubkey=pubkey)
            h.pid = _spawn(
                [
                    "systemd-nspawn",
                    "--register=no",
                    "--keep-unit",
                    "--quiet",
                    "-D",
                    str(merged),
                    "-b",
                    f"--machine={h.name}",
                    f"--network-bridge={layout.bridge}",
                    "--resolv-conf=off",
                    "--console=passive",
                ],
                layout.host_dir(h.name) / "console.log",
            )
            started.append(h)
        hosts.append(h)
    state.hosts = hosts
    save_state(layout, state)
    write_ssh_config(layout, hosts)
    for h in started:
        _wait(
            f"sshd on {h.name} ({h.ip})",
            lambda h=h: _port_open(h.ip, 22),
            90,
            h.pid,
            layout.host_dir(h.name) / "console.log",
        )
    for h in hosts:
        _wait(f"an SSH login to {h.name}", lambda h=h: _ssh_ready(layout, h.name), 60)
    for h in hosts:
        say(f"host {h.name}: {h.ip} {'started' if h in started else 'already up'} (pid {h.pid})")
    say(
        f"test hosts up: {len(hosts)} in {time.monotonic() - t_hosts:.1f} s (all steps {time.monotonic() - t0:.1f} s); "
        f"ssh -F {layout.ssh_config} {hosts[0].name}"
    )
    return state


# -- teardown and status -------------------------------------------------------------------


def _cmdline(pid: int) -> bytes:
    """A process's command line, or b"" once it has gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _our_processes(layout: Layout) -> Iterator[int]:
    """Processes whose command line names this site's state folder: found even without a state file."""
    marker = str(layout.dir).encode()
    art = str(artifact_root()).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        cmdline = _cmdline(int(proc.name))
        is_ours = marker in cmdline or (b"http.server" in cmdline and art in cmdline)
        if is_ours and (
            b"systemd-nspawn" in cmdline
            or b"apt-cacher-ng" in cmdline
            or b"http.server" in cmdline
            or b"ceph-mon" in cmdline
            or b"ceph-osd" in cmdline
            or b"radosgw" in cmdline
            or b"ssh" in cmdline
        ):
            yield int(proc.name)


def _inside_our_hosts(layout: Layout) -> list[int]:
    """Processes whose root filesystem is one of this site's host overlays.

    A container's init outlives a systemd-nspawn that had to be killed (seen: its systemd, reparented
    to PID 1, kept the container's network namespace and so its veth, and the next `up` failed with
    "Failed to add new veth interfaces ... File exists"). Inside its own mount namespace its root
    reads as "/", so it is found by its root mount: an overlay whose upper directory is ours.
    """
    marker = f"upperdir={layout.dir}/"
    try:
        ours = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return []
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "ns" / "mnt") == ours:
                continue
            lines = (proc / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        root = next((line for line in lines if line.split(" ")[4:5] == ["/"]), "")
        if marker in root:
            out.append(int(proc.name))
    return out


def _stop(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # systemd-nspawn turns this into a clean poweroff
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _our_mounts(layout: Layout) -> list[str]:
    prefix = str(layout.dir) + "/"
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def down(site_code: str, say: Say = _say) -> list[str]:
    preflight()
    layout = Layout(site_code)
    state = load_state(layout)
    removed: list[str] = []
    if layout.ssh_config.is_file() and state:
        for h in state.hosts:
            _run(["ssh", "-F", str(layout.ssh_config), "-O", "exit", h.name])
    nspawn = [p for p in _our_processes(layout) if b"systemd-nspawn" in _cmdline(p)]
    if state:
        nspawn += [h.pid for h in state.hosts if _alive(h.pid) and h.pid not in nspawn]
    if nspawn:
        _stop(nspawn, grace=30)
        removed.append(f"{len(nspawn)} host(s) powered off")
    orphans = _inside_our_hosts(layout)
    if orphans:
        _stop(orphans, grace=5)
        removed.append(f"{len(orphans)} process(es) left inside the hosts stopped")
    from . import rgw

    if rgw.stop(layout.dir / "rgw"):
        removed.append("object store (Ceph RGW) stopped")
    helpers = list(_our_processes(layout))
    if state:
        helpers += [p for p in (state.proxy_pid, state.mirror_pid) if _alive(p) and p not in helpers]
    if helpers:
        _stop(helpers, grace=5)
        removed.append(f"{len(helpers)} helper process(es) stopped (package proxy, artifact mirror, object store, ssh)")
    for point in _our_mounts(layout):
        if _run(["umount", point]).returncode != 0:
            _must(["umount", "-l", point], f"unmounting {point}")
        removed.append(f"unmounted {point}")
    if _run(["ip", "link", "show", layout.bridge]).returncode == 0:
        _must(["ip", "link", "del", layout.bridge], "deleting the bridge")
        removed.append(f"bridge {layout.bridge} deleted")
    if layout.dir.exists():
        shutil.rmtree(layout.dir)
        removed.append(f"removed {layout.dir}")
    for line in removed or ["nothing to remove"]:
        say(line)
    return removed


@dataclass(frozen=True)
class Status:
    bridge: bool
    proxy: bool
    mirror: bool
    hosts: list[tuple[str, str, bool, bool]]  # name, ip, running, ssh port open
    mounts: list[str]
    processes: list[int]

    @property
    def anything(self) -> bool:
        return self.bridge or self.proxy or self.mirror or bool(self.mounts) or bool(self.processes)


def status(site_code: str) -> Status:
    layout = Layout(site_code)
    state = load_state(layout)
    bridge = _run(["ip", "link", "show", layout.bridge]).returncode == 0
    hosts = [(h.name, h.ip, _alive(h.pid), _port_open(h.ip, 22, 0.3)) for h in state.hosts] if state else []
    return Status(
        bridge=bridge,
        proxy=bool(state and _alive(state.proxy_pid)),
        mirror=bool(state and _alive(state.mirror_pid)),
        hosts=hosts,
        mounts=_our_mounts(layout),
        processes=sorted(set(_our_processes(layout)) | set(_inside_our_hosts(layout))),
    )


def ssh_config_for(site_code: str) -> Path | None:
    """The SSH settings of running test hosts of this site, for bootstrap and verify."""
    layout = Layout(site_code)
    return layout.ssh_config if layout.ssh_config.is_file() and load_state(layout) else None
