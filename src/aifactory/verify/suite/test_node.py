"""Checks of one GPU node against what its site declares. Run by `aifactory verify`, one node per process.

Every expectation comes from the `expect` fixture (the site model, the SKU catalog and the roles'
defaults); nothing is typed in here. A check that cannot run on this node (no GPU, a container's
borrowed kernel) is skipped with the reason, never passed silently.
"""

from __future__ import annotations

import os
import shlex

import pytest
from conftest import Facts, run_python

from aifactory.verify.expectations import NodeExpectations
from aifactory.verify.imex import IMEX_READY, node_list_problems
from aifactory.verify.parsers import parse_all_reduce, parse_ib_write_bw, parse_nvlink_status
from aifactory.verify.probe import NCCL_SNIPPET, nccl_version
from aifactory.verify.topology import TOPOLOGY_SNIPPET, differences, rails

SUPPORTED = {("debian", "12"), ("ubuntu", "22.04"), ("ubuntu", "24.04")}
MIN_KERNEL = (5, 15)


def _dpkg(host, package: str) -> tuple[str, str, str]:
    """(version, selection, status) of a package; ("", "", "") when dpkg does not know it."""
    out = host.run("dpkg-query -W -f=%s %s", "${Version}\t${db:Status-Want}\t${db:Status-Status}", package)
    if out.rc != 0:
        return "", "", ""
    version, want, status = out.stdout.split("\t")
    return version, want, status.strip()


def _pinned_and_held(host, packages: list[str], version_prefix: str) -> list[str]:
    problems = []
    for pkg in packages:
        version, want, status = _dpkg(host, pkg)
        if status != "installed":
            problems.append(f"{pkg} is not installed")
            continue
        if version_prefix and not version.startswith(version_prefix):
            problems.append(f"{pkg} is {version}, the site declares {version_prefix.rstrip('-.')}")
        if want != "hold":
            problems.append(f"{pkg} is not held (selection: {want})")
    return problems


def _require_gpu(facts: Facts) -> None:
    if facts.smi is None:
        if facts.no_gpu_reason.startswith("no NVIDIA GPU"):
            pytest.skip(facts.no_gpu_reason)
        pytest.fail(facts.no_gpu_reason)


# -- operating system and kernel ----------------------------------------------------------


def test_os_supported(host, facts: Facts):
    release = facts.release.split(".")[0] if facts.distro == "debian" else facts.release
    assert (facts.distro, release) in SUPPORTED, f"{facts.distro} {facts.release} is not a supported node OS"


def test_kernel(facts: Facts):
    if facts.container:
        pytest.skip(f"a {facts.container} container: kernel {facts.kernel} belongs to the host")
    numbers = tuple(int(p) for p in facts.kernel.split("-")[0].split(".")[:2])
    assert numbers >= MIN_KERNEL, f"kernel {facts.kernel} is older than {'.'.join(map(str, MIN_KERNEL))}"


def test_nouveau_blacklisted(host):
    conf = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert conf.exists, "/etc/modprobe.d/blacklist-nouveau.conf is missing"
    assert "blacklist nouveau" in conf.content_string.splitlines(), "nouveau is not blacklisted"
    modules = host.file("/proc/modules")
    if modules.exists:
        assert not any(line.startswith("nouveau ") for line in modules.content_string.splitlines()), "nouveau is loaded"


def test_persistence_daemon_enabled(host):
    assert host.service("nvidia-persistenced").is_enabled, "nvidia-persistenced is not enabled"


def test_memlock_unlimited(host, expect: NodeExpectations, facts: Facts):
    conf = host.file("/etc/security/limits.d/90-aifactory-memlock.conf")
    assert conf.exists, "/etc/security/limits.d/90-aifactory-memlock.conf is missing"
    declared = {
        tuple(line.split()[:3]): line.split()[3]
        for line in conf.content_string.splitlines()
        if line.strip() and not line.startswith("#")
    }
    for domain in ("*", "root"):
        for kind in ("soft", "hard"):
            assert declared.get((domain, kind, "memlock")) == expect.memlock, (
                f"{domain} {kind} memlock is not {expect.memlock}"
            )
    effective = host.run("ulimit -l").stdout.strip()
    if effective != expect.memlock:
        if not facts.can_raise_limits:
            pytest.skip(
                f"limits file correct, but this environment withholds CAP_SYS_RESOURCE, so no login "
                f"can raise memlock (effective {effective})"
            )
        pytest.fail(f"a login session gets memlock {effective}, not {expect.memlock}")


def test_kernel_parameters_declared(host, expect: NodeExpectations):
    conf = host.file("/etc/sysctl.d/90-aifactory-gpu.conf")
    assert conf.exists, "/etc/sysctl.d/90-aifactory-gpu.conf is missing"
    written = dict(
        (part.strip() for part in line.split("=", 1))
        for line in conf.content_string.splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert written == expect.sysctl


def test_kernel_parameters_live(host, expect: NodeExpectations, facts: Facts):
    if facts.container:
        pytest.skip(f"a {facts.container} container: /proc/sys belongs to the host kernel")
    for name, value in expect.sysctl.items():
        assert str(host.sysctl(name)) == value, f"{name} is {host.sysctl(name)}, not {value}"


# -- driver, CUDA, NCCL -------------------------------------------------------------------


def test_driver_packages_pinned_and_held(host, expect: NodeExpectations, facts: Facts):
    packages = expect.driver_packages.get(f"{facts.distro}/{facts.machine}")
    assert packages is not None, f"no driver packages are known for {facts.distro} on {facts.machine}"
    problems = _pinned_and_held(host, packages, expect.driver + "-")
    if expect.persistenced_package[facts.distro]:
        problems += _pinned_and_held(host, [expect.persistenced_package[facts.distro]], "")
    assert not problems, "; ".join(problems)


def test_nvidia_smi_present(host, facts: Facts):
    smi = host.file("/usr/bin/nvidia-smi")
    assert smi.exists and smi.mode & 0o111, "/usr/bin/nvidia-smi is missing or not executable"
    # Any executable would pass the test above: the one installed must be an NVIDIA package's. Debian
    # installs it under /usr/lib/nvidia/current and links /usr/bin/nvidia-smi through update-alternatives
    # (nvidia-alternative), so the owner asked of dpkg is that of the file the link resolves to.
    real = host.run("readlink -f /usr/bin/nvidia-smi").stdout.strip() or "/usr/bin/nvidia-smi"
    owner = host.run("dpkg-query -S %s", real)
    package = owner.stdout.split(":")[0].strip() if owner.rc == 0 else ""
    assert package.startswith("nvidia-"), (
        f"{real} belongs to no NVIDIA package: {owner.stdout.strip() or owner.stderr.strip()}"
    )


def test_cuda_packages_pinned_and_held(host, expect: NodeExpectations, facts: Facts):
    prefix = expect.cuda + "." if facts.distro == "debian" else ""
    problems = _pinned_and_held(host, expect.cuda_packages[facts.distro], prefix)
    assert not problems, "; ".join(problems)


def test_nvcc_version(host, expect: NodeExpectations):
    if expect.cuda_components != "toolkit":
        pytest.skip(f"the site installs the CUDA {expect.cuda_components} only (gpu_stack.cuda_components): no nvcc")
    out = host.run("bash -lc 'nvcc --version'")
    assert out.rc == 0, f"nvcc did not run: {out.stderr.strip()[-200:]}"
    assert f"release {expect.cuda}," in out.stdout, f"nvcc reports {out.stdout.strip().splitlines()[-2:]}"


_CUDART = """
import ctypes, json, os, subprocess
import platform
# ldconfig -p tags each entry with its ABI: "libc6,x86-64" on amd64, "libc6,AArch64" on arm64.
abi = {"x86_64": "x86-64", "aarch64": "AArch64"}[platform.machine()]
lines = [l for l in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout.splitlines()
         if "libcudart.so." in l and abi in l]
if not lines:
    print(json.dumps({"path": None})); raise SystemExit
path = lines[0].split("=>")[1].strip()
lib = ctypes.CDLL(path); v = ctypes.c_int(0); rc = lib.cudaRuntimeGetVersion(ctypes.byref(v))
print(json.dumps({"path": path, "real": os.path.realpath(path), "rc": rc, "version": v.value}))
"""


def test_cuda_runtime_library(host, expect: NodeExpectations):
    got = run_python(host, _CUDART)
    assert got["path"], "no libcudart in the dynamic linker cache"
    real = got["real"].rsplit("libcudart.so.", 1)[1]
    assert real.startswith(expect.cuda + "."), f"libcudart is {real}, the site declares CUDA {expect.cuda}"


def test_cuda_runtime_version_call(host, expect: NodeExpectations, facts: Facts):
    got = run_python(host, _CUDART)
    assert got["path"], "no libcudart in the dynamic linker cache"
    if got["rc"] != 0:
        if facts.smi is None:
            pytest.skip(
                f"cudaRuntimeGetVersion returned CUDA error {got['rc']}: this runtime initialises the "
                f"driver to answer, and {facts.no_gpu_reason}"
            )
        pytest.fail(f"cudaRuntimeGetVersion returned CUDA error {got['rc']} on a node with a GPU")
    assert got["version"] == expect.cuda_version_code(), f"the runtime reports {got['version']}"


def test_nccl_version(host, expect: NodeExpectations):
    got = run_python(host, NCCL_SNIPPET)
    assert got["rc"] == 0, f"ncclGetVersion returned {got['rc']}"
    version = nccl_version(got["code"])
    assert version == expect.nccl_version, f"NCCL is {version}, the site declares {expect.nccl_version}"


def test_nccl_settings(host, expect: NodeExpectations):
    conf = host.file("/etc/nccl.conf")
    assert conf.exists, "/etc/nccl.conf is missing"
    settings = dict(
        line.split("=", 1) for line in conf.content_string.splitlines() if "=" in line and not line.startswith("#")
    )
    for key, value in expect.nccl_conf.items():
        assert settings.get(key) == value, f"{key} is {settings.get(key)!r}, the site's fabric gives {value!r}"


# -- GPUs (skipped with the reason where the node has none) --------------------------------


def test_gpu_count_and_model(expect: NodeExpectations, facts: Facts):
    _require_gpu(facts)
    smi = facts.smi
    assert smi.attached_gpus == expect.sku.gpu_count, (
        f"{smi.attached_gpus} GPUs, a {expect.sku.name} has {expect.sku.gpu_count}"
    )
    wrong = [g.product_name for g in smi.gpus if not g.product_name.startswith(expect.sku.gpu_product_prefix)]
    assert not wrong, f"GPUs {wrong} are not {expect.sku.gpu_product_prefix}"


def test_gpu_driver_version(expect: NodeExpectations, facts: Facts):
    _require_gpu(facts)
    assert facts.smi.driver_version == expect.driver, f"nvidia-smi reports driver {facts.smi.driver_version}"


def test_gpu_persistence_mode(facts: Facts):
    _require_gpu(facts)
    off = [g.index for g in facts.smi.gpus if g.persistence_mode != "Enabled"]
    assert not off, f"persistence mode is off on GPUs {off}"


def test_gpu_ecc_and_memory(facts: Facts):
    _require_gpu(facts)
    no_ecc = [g.index for g in facts.smi.gpus if not g.ecc_enabled]
    unhealthy = [g.index for g in facts.smi.gpus if not g.memory_healthy]
    assert not no_ecc, f"ECC is not enabled on GPUs {no_ecc}"
    assert not unhealthy, f"pending page retirement or row-remap failure on GPUs {unhealthy}"


def test_nvlink_all_up(host, expect: NodeExpectations, facts: Facts):
    """Every GPU the SKU has (0..N-1), each with all its links up: a GPU missing from the output fails too."""
    _require_gpu(facts)
    out = host.run("nvidia-smi nvlink --status")
    assert out.rc == 0, f"nvidia-smi nvlink --status exit {out.rc}"
    status = parse_nvlink_status(out.stdout)
    missing = [g for g in range(expect.sku.gpu_count) if g not in status.links]
    assert not missing, (
        f"no NVLink status for GPUs {missing}: a {expect.sku.name} has {expect.sku.gpu_count}, the node lists "
        f"{sorted(status.links)}"
    )
    want = expect.sku.nvlinks_per_gpu
    if want is None:
        # No source states the count (GB200 trays): every GPU of the node must show the same, and some.
        counts = {status.active(g) for g in status.links}
        assert len(counts) == 1 and 0 not in counts, f"active NVLinks per GPU differ on this node: {status.links}"
        return
    short = {g: status.active(g) for g in status.links if status.active(g) != want}
    assert not short, f"active NVLinks per GPU {short}, each should have {want}"


# What nvidia-smi reports in <fabric> once Fabric Manager has trained a GPU's NVLinks into the fabric: NVML's
# nvmlGpuFabricInfo_t, whose state is NOT_SUPPORTED, NOT_STARTED, IN_PROGRESS or COMPLETED and whose status
# is an nvmlReturn_t, SUCCESS once registered (NVML API Reference, "Fabric definitions",
# docs.nvidia.com/deploy/nvml-api/group__nvmlFabricDefs.html); nvidia-smi prints them Completed / Success.
FABRIC_DONE = ("Completed", "Success")


def test_fabric_manager(host, expect: NodeExpectations, facts: Facts):
    if not expect.sku.nvswitch:
        pytest.skip(f"{expect.sku.name} has no NVSwitch")
    _require_gpu(facts)
    assert host.service("nvidia-fabricmanager").is_running, "nvidia-fabricmanager is not running"
    # N/A (None) is no answer: an NVSwitch system's GPUs always report a fabric state once the driver runs.
    pending = {
        g.index: f"state {g.fabric_state or 'N/A'}, status {g.fabric_status or 'N/A'}"
        for g in facts.smi.gpus
        if (g.fabric_state, g.fabric_status) != FABRIC_DONE
    }
    assert not pending, f"NVLink fabric not {'/'.join(FABRIC_DONE)} on GPUs {pending}"


def test_all_reduce_bandwidth(host, expect: NodeExpectations, facts: Facts):
    _require_gpu(facts)
    threshold = expect.allreduce
    if threshold is None and expect.rack_allreduce is not None:
        rack = expect.rack_allreduce
        pytest.skip(
            f"the only all-reduce figure for {expect.sku.name} is a whole rack's ({rack.value:g} {rack.unit}, "
            f"{rack.source}): no threshold for one tray"
        )
    if threshold is None:
        pytest.skip(f"no published all-reduce threshold for {expect.sku.name}")
    binary = expect.all_reduce_perf
    # roles/nccl builds it on every GPU node: absent is a failure, never a pass by absence.
    assert host.file(binary).exists, f"{binary} is missing: roles/nccl builds nccl-tests on GPU nodes"
    cmd = f"{shlex.quote(binary)} -b 16G -e 16G -f 2 -g {facts.smi.attached_gpus}"
    out = host.run(cmd)
    assert out.rc == 0, f"{cmd} exit {out.rc}: {out.stderr.strip()[-200:]}"
    result = parse_all_reduce(out.stdout)
    assert result.wrong == 0, f"{result.wrong} wrong results"
    busbw = max(result.largest.oop_busbw, result.largest.ip_busbw)
    assert busbw >= threshold.value, (
        f"all-reduce bus bandwidth {busbw} {threshold.unit} at {result.largest.size} B is below "
        f"{threshold.value} ({threshold.source})"
    )


# -- IMEX and the NVLink clique (rack-scale trays) -----------------------------------------------


def _rack_scale(expect: NodeExpectations) -> None:
    if not expect.imex_nodes:
        pytest.skip(f"{expect.sku.name} is not a rack-scale SKU: its NVLink domain is the node, no IMEX")


def test_imex_packages_pinned_and_held(host, expect: NodeExpectations, facts: Facts):
    _rack_scale(expect)
    packages = expect.imex_packages.get(facts.distro, [])
    if not packages:
        pytest.skip(f"{facts.distro} ships no IMEX package (NVIDIA's CUDA repository for Ubuntu does)")
    problems = _pinned_and_held(host, packages, expect.driver + "-")
    assert not problems, "; ".join(problems)


def test_imex_node_list_is_the_rack(host, expect: NodeExpectations):
    """nodes_config.cfg holds exactly the trays of this node's rack, in the rack's order."""
    _rack_scale(expect)
    path = f"{expect.imex_config_dir}/nodes_config.cfg"
    conf = host.file(path)
    assert conf.exists, f"{path} is missing: the IMEX domain of rack {expect.rack} is not configured"
    problems = node_list_problems(expect.imex_nodes, conf.content_string)
    assert not problems, f"{path} " + "; ".join(problems) + f" (rack {expect.rack})"


def test_imex_service_state(host, expect: NodeExpectations):
    """Masked where the DRA driver runs IMEX (NVIDIA's GPU operator docs); enabled where the host runs it."""
    _rack_scale(expect)
    state = host.run("systemctl is-enabled nvidia-imex.service").stdout.strip()
    if expect.imex_daemon == "dra":
        assert state == "masked", f"nvidia-imex.service is {state or 'unknown'}; the DRA driver runs IMEX: mask it"
    else:
        assert state == "enabled", f"nvidia-imex.service is {state or 'absent'}; the host runs the rack's domain"


def test_imex_domain_ready(host, expect: NodeExpectations, facts: Facts):
    _rack_scale(expect)
    if expect.imex_daemon == "dra":
        pytest.skip("the DRA driver runs IMEX per ComputeDomain: readiness is the ComputeDomain's status")
    _require_gpu(facts)
    out = host.run("nvidia-imex-ctl -q")
    said = (out.stdout or out.stderr).strip()[:200]
    assert out.rc == 0 and out.stdout.strip() == IMEX_READY, f"nvidia-imex-ctl -q: {said}"


def test_imex_channels(host, expect: NodeExpectations, facts: Facts):
    """The driver registers the IMEX channel device; host-run IMEX has channel 0 (NVreg_CreateImexChannel0)."""
    _rack_scale(expect)
    _require_gpu(facts)
    devices = host.file("/proc/devices").content_string
    assert "nvidia-caps-imex-channels" in devices, "the driver registers no nvidia-caps-imex-channels device"
    if expect.imex_daemon == "host":
        assert host.file("/dev/nvidia-caps-imex-channels/channel0").exists, "IMEX channel 0 is missing"


def test_nvlink_clique(expect: NodeExpectations, facts: Facts, record_property):
    """Every GPU of the tray on one NVLink clique; the runner compares the cliques of a rack's trays."""
    _rack_scale(expect)
    _require_gpu(facts)
    cliques = {g.index: g.clique for g in facts.smi.gpus}
    loose = sorted(k for k, v in cliques.items() if v is None)
    assert not loose, f"GPUs without an NVLink fabric clique: {loose}"
    assert len(set(cliques.values())) == 1, f"the tray's GPUs are on different cliques: {cliques}"
    record_property("clique", next(iter(cliques.values())))


# -- RDMA fabric, GPUDirect RDMA and DCGM ---------------------------------------------------------


def _rdma_devices(host) -> list[str]:
    out = host.run("ls -1 /sys/class/infiniband")
    return out.stdout.split() if out.rc == 0 else []


def test_rdma_packages_installed(host, expect: NodeExpectations, facts: Facts):
    missing = [p for p in expect.rdma_packages[facts.distro] if _dpkg(host, p)[2] != "installed"]
    assert not missing, f"not installed: {', '.join(missing)}"
    assert host.exists("ib_write_bw"), "perftest's ib_write_bw is not on PATH"


def test_rdma_rails_active(host, expect: NodeExpectations):
    if not expect.rails:
        pytest.skip(f"the catalog has no port map for {expect.sku.name}: no rails to check")
    devices = _rdma_devices(host)
    if not devices:
        pytest.skip(f"no RDMA device on this node (/sys/class/infiniband is empty); {len(expect.rails)} rails expected")
    problems = []
    for rail, (rdma, netdev) in expect.rails.items():
        state = host.file(f"/sys/class/infiniband/{rdma}/ports/1/state")
        if not state.exists:
            problems.append(f"{rail}: no RDMA device {rdma}")
        elif "ACTIVE" not in state.content_string:
            problems.append(f"{rail}: {rdma} is {state.content_string.strip()}")
        if not host.file(f"/sys/class/net/{netdev}").exists:
            problems.append(f"{rail}: no netdev {netdev}")
    assert not problems, "; ".join(problems)


def test_pci_topology_matches_the_pool(host, expect: NodeExpectations):
    """The NIC beside each GPU, read from this node's sysfs, is the one its pool's rail runs over.

    A node cabled or populated differently from its pool (a NIC in another slot, a renamed device)
    fails here, naming what the node reports and what the pool declares.
    """
    report = run_python(host, TOPOLOGY_SNIPPET)
    if not report["gpus"]:
        pytest.skip("no NVIDIA GPU on this node's PCI bus (/sys/bus/pci/devices): no GPU/NIC topology to compare")
    found = rails(report)
    if not expect.topology:
        reported = ", ".join(f"GPU {b.gpu}: {b.names()}" for b in found) or "no RDMA NIC"
        pytest.fail(
            f"nothing records the compute ports of {expect.sku.name} (the catalog has no NVIDIA table): this node "
            f"reports {reported}; record them with `aifactory topology {expect.site} --node {expect.hostname}`"
        )
    problems = differences(expect.topology, found)
    assert not problems, "; ".join(problems) + f" [pool's ports: {expect.topology_source}]"


def test_gpudirect_rdma(host, expect: NodeExpectations, facts: Facts):
    method = expect.gpudirect_method(facts.distro, facts.kernel)
    _, _, module = expect.gpudirect[facts.distro]
    conf = host.file(f"/etc/modules-load.d/{module}.conf")
    if method == "nvidia-peermem":
        assert conf.exists and module in conf.content_string.split(), f"{conf.path} does not load {module}"
    else:
        assert not conf.exists, f"{conf.path} loads {module} where DMA-BUF serves"
    _require_gpu(facts)
    if facts.container:
        pytest.skip(f"a {facts.container} container: kernel modules belong to the host")
    if method == "nvidia-peermem":
        assert host.run(f"grep -qw {module.replace('-', '_')} /proc/modules").rc == 0, f"{module} is not loaded"


def test_dcgm_diagnostics(host, facts: Facts):
    """dcgmi diag at level 1 (seconds); AIFACTORY_DCGM_LEVEL=3 runs the burn-in level (about 15 minutes)."""
    _require_gpu(facts)
    if not host.exists("dcgmi"):
        pytest.fail("dcgmi is not installed on a GPU node (datacenter-gpu-manager)")
    level = int(os.environ.get("AIFACTORY_DCGM_LEVEL", "1"))
    out = host.run(f"dcgmi diag -r {level}")
    assert out.rc == 0 and "Fail" not in out.stdout, f"dcgmi diag -r {level}: {out.stdout.strip()[-400:]}"


def test_gpudirect_write_bandwidth(host, expect: NodeExpectations, facts: Facts):
    _require_gpu(facts)
    threshold = expect.gdr_write
    if threshold is None:
        pytest.skip(f"no published GPUDirect RDMA threshold for {expect.sku.name}")
    devices = _rdma_devices(host)
    rails = [rdma for rdma, _ in expect.rails.values() if rdma in devices]
    if len(rails) < 2:
        pytest.skip("GPUDirect write bandwidth needs two RDMA devices on the node (one serves, one writes)")
    server, client = rails[0], rails[1]
    serve = f"ib_write_bw -d {server} --use_cuda=0 --report_gbits -D 5"
    cmd = f"({serve} >/dev/null 2>&1 &) ; sleep 1 ; ib_write_bw -d {client} --use_cuda=1 --report_gbits -D 5 localhost"
    out = host.run(cmd)
    assert out.rc == 0, f"ib_write_bw exit {out.rc}: {out.stderr.strip()[-200:]}"
    gbps = parse_ib_write_bw(out.stdout)
    assert gbps >= threshold.value, (
        f"GPUDirect write {gbps} Gb/s on {client} is below {threshold.value} ({threshold.source})"
    )
