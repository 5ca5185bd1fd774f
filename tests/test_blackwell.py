"""Blackwell: DGX B200 facts, GB200 NVL72 racks, IMEX, NVIDIA's DRA driver and the German site.

Each fact is checked against the upstream file it was read from (vendored under
tests/fixtures/schemas, SOURCES.md), and each rule fails on a planted wrong fact: a tray in two
racks, a rack short of trays, an IMEX node list missing a tray, a GB200 pool on a driver below
the ComputeDomain floor, NCCL older than Blackwell, MIG beside CDMM, DRA without a Kubernetes
that serves it.
"""

from __future__ import annotations

import copy
import re
from collections import Counter

import pytest
import yaml

from aifactory import catalog, inventory, labels
from aifactory.components.dra_driver import dra_driver_values
from aifactory.errors import ConfigError
from aifactory.manifests import helm_releases, objects
from aifactory.policies import Severity
from aifactory.rollout.order import BatchSize, order
from aifactory.stackfile import load_stack
from aifactory.verify.imex import clique_problems, node_list_problems

from .conftest import ROOT, plan_of
from .helpers import crafted, raw
from .schema_check import FIXTURES, crd_schema, custom_resource_problems
from .test_policy import AS_OF, findings
from .test_schemas import has_path, leaves, reads

DRA = FIXTURES / "dra-driver-nvidia-gpu" / "v25.12.0"
DOCS = FIXTURES / "cloud-native-docs" / "52dcb7b8" / "gpu-operator"
NCCL = FIXTURES / "nccl"


def ma():
    return load_stack(ROOT, "ma").site


# -- facts against the upstream files -----------------------------------------------------------------


def test_the_dra_release_is_what_its_chart_and_code_say():
    release = catalog.DRA_DRIVER_RELEASES["25.12.0"]
    chart = yaml.safe_load((DRA / "chart" / "Chart.yaml").read_text())
    assert (chart["name"], chart["version"]) == (release.chart, release.version)
    assert chart["kubeVersion"] == f">={release.kubernetes_min}-0"
    values = yaml.safe_load((DRA / "chart" / "values.yaml").read_text())
    assert values["image"]["repository"] == f"{release.image.repository}/{release.image.name}"
    assert values["image"]["tag"] == ""  # so the tag is "v" + appVersion (templates/_helpers.tpl fullimage)
    assert 'printf "v%s" .Chart.AppVersion' in (DRA / "chart" / "templates" / "_helpers.tpl").read_text()
    assert release.image.tag == f"v{chart['appVersion']}"
    main = (DRA / "compute-domain-kubelet-plugin-main.go").read_text()
    assert f'IMEXDaemonsWithDNSNamesMinDriverVersion = "{release.compute_domain_min_driver}"' in main
    gates = (DRA / "featuregates.go").read_text()
    block = gates[gates.index("IMEXDaemonsWithDNSNames: {") :][:200]
    assert "Default:    true" in block  # the floor holds with the chart's default gates


def test_nccl_facts_are_nccls_own():
    notes = (NCCL / "v2.25.1-1.commit-message.txt").read_text()
    assert notes.startswith(f"NCCL {catalog.NCCL_BLACKWELL_MIN}-1\n") and "Add Blackwell/SM100 support" in notes
    assert '"MNNVL_ENABLE", 2)' in (NCCL / "v2.27.7-1" / "init.cc.mnnvl-lines.txt").read_text()
    assert '"NVLS_ENABLE", 2)' in (NCCL / "v2.27.7-1" / "nvls.cc.nvls-lines.txt").read_text()
    # With MNNVL on (2 or 1), a multi-node job in one clique fails at init when IMEX is broken.
    assert "Check the IMEX configuration (nvidia-imex-ctl -N)" in (NCCL / "v2.27.7-1" / "mnnvl.cc").read_text()


def test_nvidias_docs_say_what_the_catalog_and_the_roles_do():
    rn = (DOCS / "release-notes.rst").read_text()
    assert f"Starting with version **{catalog.CDMM_DEFAULT_DRIVER}**" in rn
    assert "CDMM is not compatible with the **Multi-Instance GPUs (MIG)** sharing" in rn
    dra = (DOCS / "dra-intro-install.rst").read_text()
    assert "install the corresponding ``nvidia-imex-*`` packages" in dra
    assert "systemctl mask nvidia-imex.service" in dra
    support = (DOCS / "platform-support.rst").read_text()
    arm = support[support.index("Supported ARM Based Platforms") :][:1500]
    assert "NVIDIA HGX GB200 NVL72" in arm  # the GB200 tray is an aarch64 node
    assert catalog.SKUS["gb200-nvl72"].cpu_arch == "aarch64"
    assert f"HGX B200 requires a driver container version of {catalog.SKUS['dgx-b200'].min_driver}" in support
    # The DRA driver's own readiness probe of an IMEX daemon, which verify runs on host-run IMEX.
    assert 'string(outerr) != "READY\\n"' in (DRA / "compute-domain-daemon-main.go").read_text()


def test_b200_and_gb200_facts():
    b200, gb200 = catalog.SKUS["dgx-b200"], catalog.SKUS["gb200-nvl72"]
    assert (b200.gpu_count, b200.gpu_memory_gb, b200.nvswitch_chips, b200.power_kw) == (8, 180, 2, 14.3)
    assert (b200.compute_nics, b200.min_driver, b200.min_cuda, b200.ports) == (8, "570.133.20", "12.8", None)
    assert b200.allreduce_busbw is None  # no published 8 x B200 figure
    assert gb200.rack is not None and (gb200.rack.compute_trays, gb200.rack.switch_trays) == (18, 9)
    assert (gb200.gpu_count, gb200.compute_nics, gb200.nvswitch, gb200.mnnvl) == (4, 4, False, True)
    # Not in any NVIDIA source held here: not stated.
    assert (gb200.gpu_memory_gb, gb200.power_kw, gb200.nvlinks_per_gpu) == (None, None, None)
    assert gb200.min_driver == catalog.CUDA_MIN_DRIVER["12.8"]
    # The only rack figure is a rack's (72 GPUs), never a tray's threshold.
    assert gb200.allreduce_busbw is None and gb200.rack_allreduce_busbw is not None
    assert gb200.rack_allreduce_busbw.value == 839 and "not an NVIDIA figure" in str(gb200.rack_allreduce_busbw.source)


# -- the DRA driver in the plan -------------------------------------------------------------------------


def test_the_dra_release_is_pinned_mirrored_and_its_values_are_the_charts():
    site = ma()
    (release,) = [r for r in helm_releases(plan_of("ma")) if r.chart == "nvidia-dra-driver-gpu"]
    assert release.version == "25.12.0" and release.values == dra_driver_values(site)
    chart = yaml.safe_load((DRA / "chart" / "values.yaml").read_text())
    templates = "".join(
        (DRA / "chart" / "templates" / f).read_text()
        for f in ("controller.yaml", "kubeletplugin.yaml", "_helpers.tpl", "validation.yaml")
    )
    problems = [p for p in leaves(release.values) if not has_path(chart, p) or not reads(templates, p)]
    assert problems == []
    assert release.values["image"]["repository"] == "registry.bgr1.ma.aifactory.internal/nvidia/k8s-dra-driver-gpu"
    # GPUs stay with the GPU operator's device plugin; the chart refuses both on one node otherwise.
    assert release.values["resources"] == {"gpus": {"enabled": False}, "computeDomains": {"enabled": True}}
    terms = release.values["kubeletPlugin"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    exprs = terms["nodeSelectorTerms"][0]["matchExpressions"]
    assert {"key": labels.SKU, "operator": "In", "values": ["gb200-nvl72"]} in exprs
    # Sites without a DRA driver plan none.
    assert not [r for r in helm_releases(plan_of("za")) if r.chart == "nvidia-dra-driver-gpu"]


def test_a_value_the_dra_chart_does_not_have_is_caught():
    values = dra_driver_values(ma())
    values["kubeletPlugin"]["nodeSelectorTerms"] = []
    chart = yaml.safe_load((DRA / "chart" / "values.yaml").read_text())
    assert [p for p in leaves(values) if not has_path(chart, p)] == ["kubeletPlugin.nodeSelectorTerms"]


def _readme_compute_domain() -> dict:
    text = (ROOT / "docs" / "blackwell.md").read_text()
    block = re.search(r"```yaml\n(apiVersion: resource\.nvidia\.com/v1beta1\nkind: ComputeDomain\n.*?)```", text, re.S)
    assert block, "docs/blackwell.md shows no ComputeDomain"
    return yaml.safe_load(block[1])


def test_the_readme_computedomain_conforms_to_the_vendored_crd():
    cd = _readme_compute_domain()
    crd = "dra-driver-nvidia-gpu/v25.12.0/chart/crds/resource.nvidia.com_computedomains.yaml"
    assert custom_resource_problems(cd, crd) == []
    bad = copy.deepcopy(cd)
    bad["spec"]["channel"]["allocationMode"] = "Some"
    bad["spec"]["nodes"] = 18
    problems = custom_resource_problems(bad, crd)
    assert any("allocationMode" in p for p in problems) and any("nodes" in p for p in problems)
    assert set(crd_schema(crd, "ComputeDomain", "v1beta1")["properties"]["spec"]["required"]) == {"channel", "numNodes"}


# -- racks ----------------------------------------------------------------------------------------------


def _gb200(doc: dict) -> dict:
    return next(p for p in doc["pools"] if p["sku"] == "gb200-nvl72")


def test_a_tray_in_two_racks_is_refused(workdir, cli):
    path = workdir / "stacks" / "Pulumi.ma.yaml"
    text = path.read_text()
    path.write_text(text.replace("trays: [19, 20, 21,", "trays: [18, 20, 21,", 1))
    code, _, err = cli("validate", "ma", root=workdir)
    assert code == 2
    assert "pools[2].racks[1].trays[0]" in err and "tray 18 of pool gb200a is in racks gb200-r01 and gb200-r02" in err


def test_a_tray_outside_the_pool_and_a_rack_short_of_trays_are_named():
    def short(s):
        _gb200(s)["racks"][1]["trays"].pop()

    found = findings(crafted("ma", short))
    assert any(
        f[:2] == ("topology.rack-size", "pools[2].racks[1].trays") and "rack gb200-r02 holds 17 compute tray(s)" in f[2]
        for f in found
    )
    assert any(
        f[0] == "topology.racks" and "1 of pool gb200a's gb200-nvl72 trays are in no rack (node(s) 36)" in f[2]
        for f in found
    )

    def outside(s):
        _gb200(s)["racks"][1]["trays"][-1] = 37

    with pytest.raises(ConfigError, match="rack gb200-r02 names tray 37, but pool gb200a has 36 node"):
        crafted("ma", outside)


def test_the_imex_domain_is_the_rack_and_a_list_missing_a_tray_is_caught():
    site = ma()
    rack = site.rack_nodes()["gb200-r01"]
    gv = inventory.group_vars_rack(site, "gb200-r01")
    assert gv["nvidia_imex_nodes"] == [str(n.management_ip) for n in rack] and len(rack) == 18
    assert all(n.nvlink_domain == "gb200-r01" and n.sku == "gb200-nvl72" for n in rack)
    hosts = inventory.hosts(site)["all"]
    assert set(hosts["children"]["rack_gb200_r01"]["hosts"]) == {n.hostname for n in rack}
    assert all(hosts["hosts"][n.hostname]["node_labels"][labels.RACK] == "gb200-r01" for n in rack)
    expected = [(str(n.management_ip), n.hostname) for n in rack]
    whole = "".join(f"{ip}\n" for ip, _ in expected)
    assert node_list_problems(expected, whole) == []
    missing = whole.replace("10.80.0.105\n", "")
    assert node_list_problems(expected, missing) == ["misses 1 tray(s) of the rack: 10.80.0.105 (ma-bgr1-gb200-05)"]
    swapped = "".join(f"{ip}\n" for ip, _ in reversed(expected))
    assert "another order" in node_list_problems(expected, swapped)[0]
    assert "outside the rack: 10.80.0.119" in node_list_problems(expected, whole + "10.80.0.119\n")[0]


def test_a_rack_on_two_cliques_or_two_racks_on_one_are_named():
    ok = {"r1": {f"t{i}": "u.1" for i in range(3)}, "r2": {f"s{i}": "u.2" for i in range(3)}}
    assert clique_problems(ok) == {}
    split = copy.deepcopy(ok)
    split["r1"]["t2"] = "u.7"
    assert clique_problems(split) == {"t2": "on clique u.7, the rest of rack r1 on u.1: not one NVLink domain"}
    merged = copy.deepcopy(ok)
    merged["r2"] = {f"s{i}": "u.1" for i in range(3)}
    assert set(clique_problems(merged)) == {"t0", "t1", "t2", "s0", "s1", "s2"}


def test_a_rollout_keeps_each_gb200_rack_in_one_batch():
    site = ma()
    batches = order(list(site.nodes), 1, BatchSize(10, False), lambda n: n.nvlink_domain)
    where = {h: b.index for b in batches for h in b.nodes}
    for name, members in site.rack_nodes().items():
        assert len({where[n.hostname] for n in members}) == 1, name
    # The canary proves the rack's whole domain, with one node of each other pool.
    canary = batches[0].nodes
    assert sum(1 for h in canary if "gb200" in h) == 18 and len(canary) == 20


# -- policies that fail on planted wrong facts ----------------------------------------------------------


def _set_driver(version):
    def change(s):
        s["gpu_stack"]["driver"] = version

    return change


def test_a_gb200_pool_below_the_computedomain_floor_is_refused():
    found = findings(crafted("ma", _set_driver("570.133.20")))
    assert any(
        f[0] == "compat.computedomain-driver" and "ComputeDomains need driver >= 570.158.01" in f[2] for f in found
    ), found
    assert not any(f[0] == "compat.computedomain-driver" for f in findings(crafted("ma", _set_driver("570.158.01"))))


def test_nccl_before_blackwell_support_is_refused_for_b200_pools():
    def old(s):
        s["gpu_stack"]["nccl"] = "2.24.3-1+cuda12.6"

    found = findings(crafted("ma", old))
    assert any(f[0] == "compat.nccl-sku" and "predates Blackwell support (from 2.25.1" in f[2] for f in found)
    assert not any(f[0] == "compat.nccl-sku" for f in findings(crafted("za", old)))  # H100 only


def test_mig_beside_cdmm_on_gb200_is_refused():
    def mig(s):
        _gb200(s)["mig_config"] = "all-1g.23gb"

    found = findings(crafted("ma", mig))
    assert any(f[0] == "compat.cdmm-mig" and f[1] == "pools[2].mig_config" for f in found), found


def test_the_dra_driver_needs_a_kubernetes_that_serves_dra():
    def unset(s):
        del s["kubernetes"]["version"]

    def old(s):
        s["kubernetes"]["version"] = "1.31.4"

    def beta(s):
        s["kubernetes"]["version"] = "1.33.1"

    assert any(
        f[0] == "compat.dra-kubernetes" and "declare the cluster's release" in f[2]
        for f in findings(crafted("ma", unset))
    )
    assert any("below 1.32.0" in f[2] for f in findings(crafted("ma", old)) if f[0] == "compat.dra-kubernetes")
    warned = findings(crafted("ma", beta), severity=Severity.WARNING)
    assert any(f[0] == "compat.dra-kubernetes" and "beta and off by default" in f[2] for f in warned)


def test_a_gb200_pool_without_the_dra_driver_is_warned_and_runs_imex_on_the_host():
    def no_dra(s):
        del s["gpu_stack"]["dra_driver"]

    stack = crafted("ma", no_dra)
    assert any(f[0] == "compat.dra-driver" for f in findings(stack, severity=Severity.WARNING))
    assert inventory.group_vars_all(stack.site)["nvidia_imex_daemon"] == "host"
    assert inventory.group_vars_all(ma())["nvidia_imex_daemon"] == "dra"


def test_rails_that_no_nic_serves_are_refused_and_a_four_nic_tray_takes_the_first_four():
    def nine(s):
        s["network"]["fabric"]["rails"].append({"name": "rail8", "cidr": "10.81.32.0/22"})

    assert any(f[0] == "net.rails" and "rails 8-8 serve no NIC" in f[2] for f in findings(crafted("ma", nine)))
    info = findings(load_stack(ROOT, "ma"), severity=Severity.INFO)
    assert ("net.rails", "pools[2]", "4 NICs on rails 0-3 of 8") in info


# -- the German site --------------------------------------------------------------------------------------


def test_de_is_1248_dgx_b200_in_39_scalable_units_of_32():
    site = load_stack(ROOT, "de").site
    assert site.node_total == 1248 and site.gpu_total == 9984
    assert {p.sku for p in site.pools} == {"dgx-b200"}
    units = Counter(labels.node_labels(site, n)[labels.SCALABLE_UNIT] for n in site.nodes)
    assert len(units) == 39 and set(units.values()) == {32}
    first, last = site.nodes[0], site.nodes[-1]
    assert (first.hostname, str(first.management_ip), str(first.bmc_ip)) == (
        "de-muc1-b200-0001",
        "10.96.0.11",
        "10.96.8.11",
    )
    assert (last.hostname, str(last.management_ip)) == ("de-muc1-b200-1248", "10.96.4.234")
    j = site.jurisdiction
    assert "GDPR" in j.law and "BDSG" in j.law and "BfDI" in j.regulator and j.data_residency == "DE"


def test_de_plans_1248_baremetalhosts_in_country():
    objs = objects(plan_of("de"))
    hosts = [o for o in objs if o["kind"] == "BareMetalHost"]
    assert len(hosts) == 1248
    assert all(o["spec"]["bmc"]["address"].startswith("redfish://10.96.") for o in hosts)
    assert raw("de")["config"]["aifactory:site"]["mirrors"]["containers"]["host"].endswith(".de.aifactory.internal")


def test_every_country_stack_passes_the_new_policies():
    for site in ("de", "ma"):
        errors = findings(load_stack(ROOT, site))
        assert errors == [], site
    assert AS_OF.year == 2026
