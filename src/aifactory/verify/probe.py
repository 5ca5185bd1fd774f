"""What a node has installed, read from the node itself: the driver, CUDA and NCCL versions.

`aifactory rollout` records these before and after each batch; the node suite's NCCL check uses
the same reading of NCCL's version. Nothing here trusts a cache or the inventory: every value is
what dpkg and the NCCL library on the node answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .expectations import NodeExpectations

ABSENT = "absent"

# ncclGetVersion answers NCCL_VERSION_CODE: major*10000 + minor*100 + patch since NCCL 2.9, and
# major*1000 + minor*100 + patch before (NVIDIA/nccl src/nccl.h.in, NCCL_VERSION(X,Y,Z)).
NCCL_SNIPPET = """
import ctypes, json
lib = ctypes.CDLL("libnccl.so.2"); v = ctypes.c_int(0); rc = lib.ncclGetVersion(ctypes.byref(v))
print(json.dumps({"rc": rc, "code": v.value}))
"""


def nccl_version(code: int) -> str:
    if code >= 10000:
        return f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
    return f"{code // 1000}.{code % 1000 // 100}.{code % 100}"


# One round trip per node: the packages' versions from dpkg, NCCL's from the library the dynamic
# linker finds (what a job would load). The package names arrive as one JSON argument.
VERSIONS_SNIPPET = """
import ctypes, json, platform, subprocess, sys
wanted = json.loads(sys.argv[1])
distro = ""
for line in open("/etc/os-release"):
    if line.startswith("ID="):
        distro = line.split("=", 1)[1].strip().strip('"')
out = {}
for component, packages in wanted.get(distro + "/" + platform.machine(), {}).items():
    got = subprocess.run(["dpkg-query", "-W", "-f=${Version}\\t${db:Status-Status}", packages[0]],
                         capture_output=True, text=True)
    version, _, status = got.stdout.partition("\\t")
    out[component] = version if got.returncode == 0 and status == "installed" else "absent"
try:
    lib = ctypes.CDLL("libnccl.so.2"); v = ctypes.c_int(0)
    out["nccl"] = v.value if lib.ncclGetVersion(ctypes.byref(v)) == 0 else "absent"
except OSError:
    out["nccl"] = "absent"
print(json.dumps({"distro": distro, "versions": out}))
"""


def packages_of(expect: NodeExpectations) -> dict[str, dict[str, list[str]]]:
    """"<distro>/<machine>" -> component -> packages, the first of which carries the component's version."""
    out = {}
    for key, driver in expect.driver_packages.items():
        cuda = expect.cuda_packages.get(key.split("/")[0])
        if driver and cuda:
            out[key] = {"driver": driver, "cuda": cuda}
    return out


def read_versions(address: str, expect: NodeExpectations, ssh_config: Path | None = None) -> dict[str, str]:
    """{"driver": dpkg version, "cuda": dpkg version, "nccl": "2.21.5"}, "absent" for what is not there.

    Raises RuntimeError, with the node's own words, when it cannot be read.
    """
    import testinfra

    host = testinfra.get_host(f"ssh://{address}", **({"ssh_config": str(ssh_config)} if ssh_config else {}))
    out = host.run("python3 -c %s %s", VERSIONS_SNIPPET, json.dumps(packages_of(expect)))
    if out.rc != 0:
        last = (out.stderr.strip().splitlines() or [f"exit {out.rc}"])[-1]
        raise RuntimeError(f"could not read the installed versions: {last[:300]}")
    got: dict[str, Any] = json.loads(out.stdout)["versions"]
    if isinstance(got.get("nccl"), int):
        got["nccl"] = nccl_version(got["nccl"])
    return {k: str(v) for k, v in got.items()}
