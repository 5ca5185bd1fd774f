"""A one-node Ceph RADOS Gateway: the lab's in-country object store and the tests' real S3 server.

Debian's Ceph (16, Pacific) runs a monitor, one memory-backed OSD and radosgw as plain processes
under a private directory: no systemd, no ceph-mgr, no authentication between daemons (they bind
only to the address given: loopback for the tests, the lab bridge for the lab). The zonegroup's
``api_name`` is set to the site's region, so RGW itself refuses a bucket in any other location
(InvalidLocationConstraint), as a real in-country store does. Recipe and figures:
``../shared/field-notes.md``, "A real S3 server on loopback".

Harness code: the product (``aifactory.storage``) never imports it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ..errors import ConfigError, OperationError
from ..fsutil import read_user_file

# The harness's process helpers: spawned in a session of their own, found again by pid.
from .proc import alive as _alive
from .proc import owned
from .proc import port_open as _port_open
from .proc import spawn as _spawn
from .proc import stop as _stop
from .proc import wait as _wait

PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common")
_PROGRAMS = ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin")
_NAME = "client.rgw.af"
_STATE = "gateway.json"
_TRANSIENT = "problem getting command descriptions from mon"
_TRANSIENT_TRIES = 20


@dataclass(frozen=True)
class User:
    uid: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class Gateway:
    directory: Path
    endpoint: str
    region: str
    pids: dict[str, int]


def missing_programs() -> list[str]:
    return [p for p in _PROGRAMS if shutil.which(p) is None]


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


# tcp_nodelay=1: without it every GET answer with a body waited about 40 ms here (Nagle's algorithm
# meeting the client's delayed ACK), 44 ms against 1.5 ms per read measured on this machine.
def _conf(directory: Path, fsid: str, address: str, mon_port: int, rgw_port: int) -> str:
    d = directory
    return f"""[global]
fsid = {fsid}
mon host = v1:{address}:{mon_port}
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
run dir = {d}/run
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
public network = {address}/32
osd crush chooseleaf type = 0
client mount timeout = 20
rados mon op timeout = 20
[mon]
mon data = {d}/mon
[osd]
# The OSD's own start-up crush commands could leave before its monitor client had the monmap and
# so carry a zero fsid: the monitor refused them ('wrong fsid') and the OSD exited, up to 3 starts in
# a row (seen). The harness places osd.0 in the crush map itself instead.
osd crush update on start = false
osd class update on start = false
osd objectstore = memstore
memstore device bytes = 1073741824
osd data = {d}/osd$id
[{_NAME}]
rgw frontends = beast endpoint={address}:{rgw_port} tcp_nodelay=1
rgw dns name = {address}
"""


class _Cluster:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.conf = str(directory / "ceph.conf")

    def run(self, *argv: str, timeout: float = 60) -> str:
        # On a loaded machine a freshly started monitor answers its first commands with EPERM "problem
        # getting command descriptions from mon" for a few seconds (seen at a load of 13 on 2 cores).
        for attempt in range(_TRANSIENT_TRIES):
            try:
                done = subprocess.run(
                    [*argv[:1], "-c", self.conf, *argv[1:]],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise OperationError(f"RGW harness: `{' '.join(argv[:3])}` did not answer in {timeout:.0f} s") from None
            if done.returncode == 0 or _TRANSIENT not in done.stderr or attempt == _TRANSIENT_TRIES - 1:
                break
            time.sleep(1.0)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise OperationError(f"RGW harness: `{' '.join(argv[:3])}` failed: {tail[0]}")
        return done.stdout

    def admin(self, *argv: str) -> str:
        return self.run("radosgw-admin", "-n", _NAME, *argv)

    def log(self, name: str) -> Path:
        return self.directory / "log" / f"{name}.out"

    def daemon(self, name: str, *argv: str) -> int:
        return _spawn([*argv[:1], "-c", self.conf, "-f", *argv[1:]], self.log(name))

    def wait_port(self, address: str, port: int, pid: int, name: str, timeout: float = 60) -> None:
        _wait(f"{name} on {address}:{port}", lambda: _port_open(address, port), timeout, pid, self.log(name))


def _start_osd(c: _Cluster, attempts: int = 3) -> int:
    """Start osd.0 and wait until the monitor has it up.

    The OSD no longer sends its own crush commands at start-up (see the [osd] section), which is what
    was refused with 'wrong fsid'; a failed start is still retried, up to ``attempts`` times.
    """
    for attempt in range(1, attempts + 1):
        pid = c.daemon("osd", "ceph-osd", "-i", "0")
        end = time.monotonic() + 30
        while time.monotonic() < end and _alive(pid):
            try:
                stat = json.loads(c.run("ceph", "osd", "stat", "--format", "json", timeout=20))
            except (OperationError, ValueError):
                stat = {}  # the same transient refusal (EPERM) can meet this query: ask again
            if int(stat.get("num_up_osds", stat.get("osdmap", {}).get("num_up_osds", 0))) >= 1:
                return pid
            time.sleep(0.3)
        _stop([pid], grace=20)
        if attempt < attempts:
            time.sleep(1)
    raise OperationError(f"RGW harness: ceph-osd did not come up in {attempts} starts (see {c.directory}/log)")


def start(
    directory: Path,
    *,
    region: str,
    users: Sequence[User],
    address: str = "127.0.0.1",
    port: int | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> Gateway:
    """A fresh one-node cluster in ``directory`` (emptied first), RGW answering S3 on address:port."""
    if missing := missing_programs():
        raise OperationError(f"RGW harness: {', '.join(missing)} not installed (apt-get install {' '.join(PACKAGES)})")
    stop(directory)
    shutil.rmtree(directory, ignore_errors=True)
    for sub in ("run", "log", "mon", "osd0"):
        (directory / sub).mkdir(parents=True)
    t0 = time.monotonic()
    mon_port = free_port(address)
    rgw_port = port or free_port(address)
    fsid = str(uuid.uuid4())
    (directory / "ceph.conf").write_text(_conf(directory, fsid, address, mon_port, rgw_port))
    c = _Cluster(directory)
    pids: dict[str, int] = {}
    try:
        # --addv with an explicit v1 address: with a non-default port monmaptool would assume msgr v2.
        subprocess.run(
            ["monmaptool", "--create", "--addv", "a", f"[v1:{address}:{mon_port}]", "--fsid", fsid, "monmap"],
            cwd=directory,
            capture_output=True,
            check=True,
        )
        c.run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(directory / "monmap"))
        pids["mon"] = c.daemon("mon", "ceph-mon", "-i", "a")
        _save(directory, pids, address, rgw_port, region)  # from here on, stop() finds what to stop
        c.wait_port(address, mon_port, pids["mon"], "mon")
        # The OSD registers under the uuid it was made with; without one, its start-up "osd create"
        # can meet a nil uuid on osd.0 and be refused ('wrong fsid', seen here).
        osd_uuid = str(uuid.uuid4())
        c.run("ceph", "osd", "create", osd_uuid, "0")
        c.run("ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        pids["osd"] = _start_osd(c)
        c.run("ceph", "osd", "crush", "add", "osd.0", "1.0", "host=localhost", "root=default")
        _save(directory, pids, address, rgw_port, region)
        # RGW creates the default zonegroup on its first start; its api_name (the only location a
        # bucket may be created in) is then set and RGW restarted to serve it.
        pids["rgw"] = c.daemon("rgw", "radosgw", "-n", _NAME)
        _save(directory, pids, address, rgw_port, region)
        c.wait_port(address, rgw_port, pids["rgw"], "rgw", timeout=90)
        zonegroup = json.loads(c.admin("zonegroup", "get"))
        zonegroup["api_name"] = region
        (directory / "zonegroup.json").write_text(json.dumps(zonegroup))
        c.admin("zonegroup", "set", "--infile", str(directory / "zonegroup.json"))
        _stop([pids.pop("rgw")], grace=20)
        pids["rgw"] = c.daemon("rgw", "radosgw", "-n", _NAME)
        _save(directory, pids, address, rgw_port, region)
        c.wait_port(address, rgw_port, pids["rgw"], "rgw", timeout=90)
        for user in users:
            add_user(directory, user)
    except BaseException:
        stop(directory)
        raise
    endpoint = f"http://{address}:{rgw_port}"
    say(f"Ceph RGW {endpoint} (zonegroup api_name {region}) up in {time.monotonic() - t0:.1f} s")
    return Gateway(directory, endpoint, region, pids)


def add_user(directory: Path, user: User) -> None:
    """An S3 user with the given keys; a user already there is left as it is."""
    try:
        _Cluster(directory).admin(
            "user",
            "create",
            f"--uid={user.uid}",
            f"--display-name={user.uid}",
            f"--access-key={user.access_key}",
            f"--secret={user.secret_key}",
        )
    except OperationError as exc:
        if f"user: {user.uid} exists" not in str(exc):
            raise


class _GatewayState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pids: dict[Literal["mon", "osd", "rgw"], Annotated[int, Field(ge=2, le=4_194_304)]]
    address: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")]
    port: Annotated[int, Field(ge=1, le=65_535)]
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")]


def _save(directory: Path, pids: dict[str, int], address: str, port: int, region: str) -> None:
    state = {"pids": pids, "address": address, "port": port, "region": region}
    (directory / _STATE).write_text(json.dumps(state))


def _state(directory: Path) -> _GatewayState | None:
    """The recorded gateway, or None: absent, not whole, or naming processes that are not this cluster's."""
    try:
        data = read_user_file(directory / _STATE, 4096, str(directory / _STATE))
        st = _GatewayState.model_validate_json(data, strict=True)
    except (ConfigError, ValidationError):
        return None
    return st


def _ours(directory: Path, pids: dict[str, int]) -> list[int]:
    # Each of the cluster's daemons runs with -c DIR/ceph.conf: a recorded pid is ours only if it says so.
    return [p for p in pids.values() if owned(p, directory / "ceph.conf")]


def load(directory: Path) -> Gateway | None:
    """The gateway recorded in ``directory`` if all its processes still run."""
    st = _state(directory)
    if st is None or set(st.pids) != {"mon", "osd", "rgw"} or len(_ours(directory, st.pids)) != 3:
        return None
    return Gateway(directory, f"http://{st.address}:{st.port}", st.region, dict(st.pids))


def stop(directory: Path) -> bool:
    """Stop the gateway recorded in ``directory``; whether any of its processes was running."""
    st = _state(directory)
    (directory / _STATE).unlink(missing_ok=True)
    running = _ours(directory, st.pids) if st else []
    # A ceph-osd takes seconds to exit; a new cluster in the same directory before then hangs.
    _stop(running, grace=20)
    return bool(running)
