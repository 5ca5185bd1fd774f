"""The services a run's nodes reach, each on the address the site's mirrors declare.

- the package proxy (apt-cacher-ng): one per machine, on loopback, shared by every run because
  it is a cache; each run reaches it through a relay listening on its declared address inside
  the run's namespace, since the proxy alone needs the internet;
- the artifact mirror (NCCL's redistributable from PyPI): files in a shared cache, served by an
  http.server inside the run's namespace;
- the object store: a one-node Ceph RGW inside the run's namespace, with the stack's keys;
- the cluster: a real Kubernetes control plane (``kube``) on the bridge address, with the CRDs the
  program declares objects of and the run's hosts registered as Nodes.
"""

from __future__ import annotations

import fcntl
import json
import random
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from ..caches import CACHE_ROOT
from ..errors import ConfigError, OperationError, Problem
from ..fsutil import read_model, write_atomic
from ..model import Site
from ..stackfile import SITE_KEY, Stack
from . import kube, netns, rgw
from .proc import Say, alive, must, owned, port_open, spawn, stop, wait
from .run import SHARED, STATE_ROOT, Run, State

# Upstream files vendored at their pinned tags (tests/fixtures/schemas/SOURCES.md), relative to the checkout.
SCHEMAS = Path("tests/fixtures/schemas")
# Debian's archive, which the package proxy serves to the hosts.
UPSTREAM_DEBIAN = "http://deb.debian.org/debian/"


@dataclass(frozen=True)
class Addresses:
    gateway: str
    prefix: int
    proxy_port: int
    mirror_port: int


def addresses(site: Site, shown: str) -> Addresses:
    """Gateway, prefix, proxy port and mirror port, checked against the site's own mirrors."""
    mgmt = site.network.management
    if mgmt.gateway is None:
        raise ConfigError(
            [Problem(shown, f"{SITE_KEY}.network.management.gateway", "test hosts need a gateway: the bridge takes it")]
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
    return Addresses(gw, mgmt.cidr.prefixlen, ports[0], ports[1])


# -- the shared package proxy ---------------------------------------------------------------

PROXY_DIR = STATE_ROOT / SHARED / "apt-cacher-ng"


@contextmanager
def locked(name: str) -> Iterator[None]:
    """A machine-wide lock for what runs share (the proxy, the rootfs cache)."""
    lock = STATE_ROOT / SHARED / f"{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


class _ProxyState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pid: Annotated[int, Field(ge=0, le=4_194_304)]
    port: Annotated[int, Field(ge=1, le=65_535)]


def _proxy_state() -> dict[str, int]:
    """The shared proxy's pid and port, when its state file is whole and names our apt-cacher-ng; else none.

    The file is shared by every run on the machine: a corrupted one is treated as no proxy (a new
    one starts), and its pid is never signalled unless that process is the proxy of PROXY_DIR.
    """
    try:
        st = read_model(STATE_ROOT, PROXY_DIR / "state.json", _ProxyState, 4096)
    except (FileNotFoundError, ConfigError):
        return {"pid": 0, "port": 0}
    if not owned(st.pid, PROXY_DIR):
        return {"pid": 0, "port": 0}
    return {"pid": st.pid, "port": st.port}


def _proxy_port() -> int:
    """A free loopback port below 32768: apt-cacher-ng 3.7 refuses higher ones ("Error resolving address
    for binding", seen here with 36713 and 40000; 9999 and 3199 bound)."""
    for port in random.sample(range(20000, 32768), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OperationError("no free loopback port below 32768 for the package proxy")


def shared_proxy(say: Say) -> int:
    """The machine's package proxy on 127.0.0.1: its port, started when no run has it up yet."""
    with locked("proxy"):
        st = _proxy_state()
        if alive(st["pid"]) and port_open("127.0.0.1", st["port"]):
            return st["port"]
        port = _proxy_port()
        cache, logs = CACHE_ROOT / "apt-cacher-ng", PROXY_DIR / "log"
        for d in (cache, logs):
            d.mkdir(parents=True, exist_ok=True)
        # Requests for deb.debian.org/debian go to one backend; the stock list names mirrors
        # these machines cannot reach. ForceManaged: 1 refuses every other location a request
        # names (acng.conf: "all downloads must be processed by the preconfigured remapping
        # backends"): without it the proxy fetched whatever host a path named (seen: the lab's
        # ubuntu and cuda mirror paths reached archive.ubuntu.com and NVIDIA), and the project's
        # traffic may go to Debian's mirror only. Checked: debian 200, ubuntu and NVIDIA 403.
        (PROXY_DIR / "acng.conf").write_text(
            f"CacheDir: {cache}\nLogDir: {logs}\nSupportDir: /usr/lib/apt-cacher-ng\n"
            f"Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian\n"
            f"Port: {port}\nBindAddress: 127.0.0.1\nExThreshold: 4\nForceManaged: 1\n"
        )
        (PROXY_DIR / "backends_debian").write_text(UPSTREAM_DEBIAN + "\n")
        log = PROXY_DIR / "apt-cacher-ng.out"
        pid = spawn(
            ["/usr/sbin/apt-cacher-ng", "-c", str(PROXY_DIR), "ForeGround=1", f"PidFile={PROXY_DIR / 'pid'}"], log
        )
        try:
            wait(f"the package proxy on 127.0.0.1:{port}", lambda: port_open("127.0.0.1", port), 20, pid, log)
        except OperationError:
            stop([pid], grace=5)  # recorded nowhere yet: nothing else would find it
            raise
        write_atomic(PROXY_DIR / "state.json", json.dumps({"pid": pid, "port": port}), root=STATE_ROOT)
        say(f"package proxy: apt-cacher-ng on 127.0.0.1:{port}, shared by this machine's runs (cache {cache})")
        return port


def release_proxy(still_running: list[str], say: Say) -> None:
    """Stop the shared proxy once no run is left that uses it; its cache stays."""
    with locked("proxy"):
        if still_running:
            return
        st = _proxy_state()
        if alive(st["pid"]):
            stop([st["pid"]], grace=5)
            say("package proxy stopped (no run left)")
        (PROXY_DIR / "state.json").unlink(missing_ok=True)


def ensure_proxy_relay(run: Run, state: State, a: Addresses, say: Say) -> None:
    """The declared proxy address inside the run's namespace, relayed to the shared proxy."""
    port = shared_proxy(say)
    relaying = alive(state.relay_pid) and owned(state.relay_pid, run.netns)
    if relaying and state.relay_port == port and netns.inside(run.netns, lambda: port_open(a.gateway, a.proxy_port)):
        return
    if relaying:
        # The shared proxy came back on another port (another run stopped it and a third started
        # one; seen on a machine several checkouts share): the relay still points at the old one.
        stop([state.relay_pid], grace=5)
    log = run.dir / "proxy-relay.out"
    state.relay_pid = spawn(
        [
            sys.executable,
            "-m",
            "aifactory.testhosts.relay",
            "listen",
            run.netns,
            f"{a.gateway}:{a.proxy_port}",
            f"127.0.0.1:{port}",
        ],
        log,
    )
    netns.inside(
        run.netns,
        lambda: wait(
            f"the package proxy on {a.gateway}:{a.proxy_port}",
            lambda: port_open(a.gateway, a.proxy_port),
            20,
            state.relay_pid,
            log,
        ),
    )
    state.relay_port = port
    say(f"package proxy: {a.gateway}:{a.proxy_port} in {run.netns}, relayed to the shared proxy")


# -- the artifact mirror -------------------------------------------------------------------


def artifact_root() -> Path:
    return CACHE_ROOT / "artifacts"


def ensure_artifacts(site: Site, say: Say) -> None:
    """Stock the artifact mirror with what the site's roles fetch from it: NCCL's redistributable, one
    wheel per CPU architecture the site's SKUs have (roles/nccl names the aarch64 one with its arch)."""
    from ..catalog import SKUS

    for machine in sorted({SKUS[p.sku].cpu_arch for p in site.pools}):
        _ensure_nccl(site, machine, say)


def _ensure_nccl(site: Site, machine: str, say: Say) -> None:
    from ..mirror.manifest import nccl_name

    g = site.gpu_stack
    major = g.nccl_cuda.split(".")[0]
    prefix = urlsplit(site.mirrors.artifacts.url).path.strip("/")
    target = artifact_root() / prefix / "nccl" / nccl_name(site, machine)
    if target.is_file():
        return
    say(f"artifact mirror: fetching NCCL {g.nccl_version} (nvidia-nccl-cu{major}, {machine}) from PyPI")
    with tempfile.TemporaryDirectory() as tmp:
        must(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                f"manylinux2014_{machine}",
                "--python-version",
                "3.11",
                f"nvidia-nccl-cu{major}=={g.nccl_version}",
                "-d",
                tmp,
            ],
            f"downloading the NCCL redistributable for {machine}",
        )
        (wheel,) = Path(tmp).glob("*.whl")
        target.parent.mkdir(parents=True, exist_ok=True)
        # A move within one file system is atomic: a run beside this one sees the whole file or none.
        staged = target.with_name(f".{target.name}.{Path(tmp).name}")
        shutil.copyfile(wheel, staged)
        staged.replace(target)


def ensure_mirror(run: Run, state: State, a: Addresses, say: Say) -> None:
    def start() -> None:
        if alive(state.mirror_pid) and port_open(a.gateway, a.mirror_port):
            return
        root = artifact_root()
        root.mkdir(parents=True, exist_ok=True)
        log = run.dir / "artifact-mirror.out"
        state.mirror_pid = spawn(
            [sys.executable, "-m", "http.server", "--bind", a.gateway, "--directory", str(root), str(a.mirror_port)],
            log,
        )
        wait(
            f"the artifact mirror on {a.gateway}:{a.mirror_port}",
            lambda: port_open(a.gateway, a.mirror_port),
            20,
            state.mirror_pid,
            log,
        )
        say(f"artifact mirror: http://{a.gateway}:{a.mirror_port}/ serving {root}")

    netns.inside(run.netns, start)


# -- the object store ----------------------------------------------------------------------


def ensure_object_store(stack: Stack, root: Path, run: Run, gateway: str, say: Say) -> None:
    """The site's object store as a one-node Ceph RGW in the run's namespace, when the stack puts it on the bridge.

    Its zonegroup's api_name is the store's region (RGW then refuses any other location), and its
    owner account has the keys the stack holds, so the stack reaches it as it reaches a real store.
    """
    from ..storage.site import credentials
    from .lab_env import passphrase_env

    store = stack.site.storage.object_store
    url = urlsplit(store.url)
    if url.hostname != gateway:
        say(f"object store: {store.url} is not on the bridge; the lab does not start one")
        return
    if rgw.load(run.rgw_dir) is not None:
        say(f"object store: Ceph RGW on {gateway}:{url.port or 80} already up")
        return
    creds = credentials(stack, passphrase_env(root, stack.site.code))
    netns.inside(
        run.netns,
        lambda: rgw.start(
            run.rgw_dir,
            region=store.region,
            users=[rgw.User(f"{stack.site.code}-owner", creds.access_key_id, creds.secret_access_key)],
            address=gateway,
            port=url.port or 80,
            say=lambda m: say(f"object store: {m}"),
        ),
    )


# -- the Kubernetes control plane ------------------------------------------------------------

API_PORT = 6443  # kube-apiserver's customary port, on the bridge address inside the run's namespace


def crd_paths(site: Site) -> dict[str, str]:
    """The CRD file of each custom kind the program declares, under tests/fixtures/schemas, at the site's pins."""
    from .. import catalog

    net = f"network-operator/v{site.gpu_stack.network_operator}"
    return {
        "NicClusterPolicy": f"{net}/nicclusterpolicies.crd.yaml",
        "IPPool": f"{net}/ippools.crd.yaml",
        "NetworkAttachmentDefinition": f"{net}/networkattachmentdefinitions.crd.yaml",
        "BareMetalHost": f"baremetal-operator/{catalog.METAL3_BAREMETAL_OPERATOR}/baremetalhosts.crd.yaml",
    }


def crd_files(root: Path, site: Site) -> list[Path]:
    """The files themselves: the project's, or (a scratch project has none) those of the checkout running this."""
    base = root if (root / SCHEMAS).is_dir() else Path(__file__).resolve().parents[3]
    return [base / SCHEMAS / rel for rel in crd_paths(site).values()]


def site_nodes(site: Site) -> list[kube.NodeSpec]:
    """The site's nodes as Nodes: the labels the inventory gives Kubespray's node_labels, and their address."""
    from .. import labels

    return [kube.NodeSpec(n.hostname, labels.node_labels(site, n), str(n.management_ip)) for n in site.nodes]


def ensure_control_plane(stack: Stack, root: Path, run: Run, gateway: str, say: Say) -> kube.ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager in the run's namespace, the CRDs, the hosts as Nodes."""
    from ..engines import locate

    site = stack.site
    if (cp := kube.load(run.kube_dir)) is not None:
        say(f"Kubernetes: control plane {cp.server} already up")
        return cp
    engines = locate.ensure(root, ["kube", "etcd"], say)

    def bring_up() -> kube.ControlPlane:
        cp = kube.start(
            run.kube_dir,
            engines,
            contexts=[site.kubernetes.context],
            address=gateway,
            port=API_PORT,
            service_cidr=str(site.network.services),
            say=lambda m: say(f"Kubernetes: {m}"),
        )
        kube.apply_crds(cp, crd_files(root, site), say=lambda m: say(f"Kubernetes: {m}"))
        kube.register_nodes(cp, site_nodes(site), say=lambda m: say(f"Kubernetes: {m}"))
        return cp

    return netns.inside(run.netns, bring_up)
