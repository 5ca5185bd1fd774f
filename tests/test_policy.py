"""Every policy fails on a crafted bad site and passes on the real stacks."""

from __future__ import annotations

from datetime import date

import pytest

from aifactory.policies import Severity, evaluate, evaluate_sites
from aifactory.stackfile import load_stack

from .conftest import ROOT, SITES
from .helpers import crafted

AS_OF = date(2026, 11, 23)


def findings(stack, severity=Severity.ERROR, others=()):
    results = evaluate_sites([stack, *others], only={stack.name}, as_of=AS_OF)
    return [(r.id, r.path.removeprefix("aifactory:site."), r.message) for r in results if r.severity is severity]


def test_real_stacks_pass_every_policy():
    stacks = [load_stack(ROOT, s) for s in SITES]
    errors = [r.line() for r in evaluate_sites(stacks, as_of=AS_OF) if r.severity is Severity.ERROR]
    assert errors == []


def test_real_stacks_warnings_are_the_expected_ones():
    stacks = [load_stack(ROOT, s) for s in SITES]
    warnings = [(r.site, r.id) for r in evaluate_sites(stacks, as_of=AS_OF) if r.severity is Severity.WARNING]
    # Debian 12 ships R535 and NG/KE run R570, both past end of support; every site pins a GPU
    # operator NVIDIA lists as end of support; no DGX B200 port names are recorded yet (EG, MA, DE:
    # NVIDIA publishes no table, a node reports them). The lab keeps its state in its own in-country
    # store, as the countries do: no residency warning.
    assert sorted(set(warnings)) == sorted(
        [
            *[(s, "compat.operator-eol") for s in SITES],
            ("ke", "compat.driver-eol"),
            ("ng", "compat.driver-eol"),
            ("lab", "compat.driver-eol"),
            ("eg", "net.port-map"),
            ("ma", "net.port-map"),
            ("de", "net.port-map"),
            # Multus, the CNI plugins, node-feature-discovery and the gpu-operator chart: no upstream digest.
            *[(s, "supply.digests") for s in SITES],
        ]
    )


def _set(path, value):
    def change(site):
        node = site
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        node[int(last) if last.isdigit() else last] = value

    return change


CASES = [
    # (site, change, policy id, field, words in the message)
    ("eg", _set("mirrors.charts.country", "KE"), "residency.in-country", "mirrors.charts.country", "outside EG"),
    (
        "eg",
        _set("mirrors.charts.url", "https://helm.ngc.nvidia.com/nvidia"),
        "residency.public-service",
        "mirrors.charts.url",
        "global public service",
    ),
    (
        "eg",
        _set("mirrors.containers.host", "nvcr.io"),
        "residency.public-service",
        "mirrors.containers.host",
        "nvcr.io",
    ),
    (
        "eg",
        _set("state_backend.url", "s3://eg-state/aifactory"),
        "residency.state-backend",
        "state_backend.url",
        "stores state in AWS S3",
    ),
    (
        "eg",
        _set("state_backend.url", "https://api.pulumi.com"),
        "residency.state-backend",
        "state_backend.url",
        "public service",
    ),
    (
        "eg",
        _set("storage.object_store.buckets.1.replication.country", "SA"),
        "residency.in-country",
        "storage.object_store.buckets[1].replication.country",
        "outside EG",
    ),
    (
        "eg",
        _set("jurisdiction.data_residency", "FR"),
        "residency.in-country",
        "jurisdiction.data_residency",
        "must reside in FR",
    ),
    # Residency is proven from the site's own zones and ranges, whatever country a field claims.
    (
        "eg",
        _set("mirrors.debian.url", "https://ftp.uni-erlangen.de/debian"),
        "residency.in-country",
        "mirrors.debian.url",
        "ftp.uni-erlangen.de is not proven in EG",
    ),
    (
        "eg",
        _set("storage.object_store.url", "https://s3.eu-west-1.amazonaws.com."),
        "residency.public-service",
        "storage.object_store.url",
        "s3.eu-west-1.amazonaws.com is a global public service",
    ),
    (
        "eg",
        _set("state_backend.url", "s3://eg-state/x?endpoint=https://s3.eu-west-1.amazonaws.com"),
        "residency.state-backend",
        "state_backend.url",
        "s3.eu-west-1.amazonaws.com is a public service",
    ),
    (
        "eg",
        _set("state_backend.url", "s3://eg-state/x?endpoint=minio.example.org:9000"),
        "residency.state-backend",
        "state_backend.url",
        "minio.example.org is not proven in EG",
    ),
    (
        "eg",
        _set("state_backend.url", "s3://eg-state/x?endpoint=s3.cai1.eg.aifactory.internal&endpoint=s3.amazonaws.com"),
        "residency.state-backend",
        "state_backend.url",
        "endpoint= is given more than once",
    ),
    ("eg", _set("network.dns.0", "8.8.8.8"), "residency.in-country", "network.dns[0]", "8.8.8.8 is not proven in EG"),
    ("eg", _set("network.ntp.1", "pool.ntp.org"), "residency.in-country", "network.ntp[1]", "pool.ntp.org is not"),
    (
        "eg",
        _set("jurisdiction.in_country.dns_suffixes", ["amazonaws.com"]),
        "residency.suffixes",
        "jurisdiction.in_country.dns_suffixes[0]",
        "covers global public services",
    ),
    (
        "eg",
        _set("jurisdiction.in_country.networks", ["10.0.0.0/7"]),
        "residency.suffixes",
        "jurisdiction.in_country.networks[0]",
        "wider than a /8",
    ),
    ("ke", _set("gpu_stack.driver", "520.61.05"), "compat.cuda-driver", "gpu_stack.driver", "below 570.26"),
    ("ke", _set("gpu_stack.cuda", "12.7"), "compat.cuda-driver", "gpu_stack.cuda", "not in the compatibility table"),
    (
        "eg",
        _set("gpu_stack.driver", "550.163.01"),
        "compat.sku-driver",
        "pools[0].sku",
        "dgx-b200 needs driver >= 570.133.20",
    ),
    ("za", _set("gpu_stack.nccl", "2.28.7-1+cuda12.9"), "compat.nccl-cuda", "gpu_stack.nccl", "majors differ"),
    ("ke", _set("gpu_stack.driver", "560.35.03"), "compat.operator-driver", "gpu_stack.gpu_operator", "not R560"),
    (
        "za",
        _set("network.storage.cidr", "10.16.0.0/22"),
        "net.overlap",
        "network.storage.cidr",
        "overlaps network.management.cidr",
    ),
    (
        "za",
        _set("network.management.cidr", "10.16.0.0/27"),
        "net.capacity",
        "network.management.cidr",
        "the pools need host number 52",
    ),
    (
        "za",
        _set("network.fabric.rails.0.cidr", "10.17.0.0/26"),
        "net.capacity",
        "network.fabric.rails[0].cidr",
        "holds 7 blocks of 8 for 32 nodes",
    ),
    ("za", _set("network.pods", "10.18.0.0/20"), "net.capacity", "network.pods", "16 node /24 blocks for 32 nodes"),
    ("za", _set("network.management.gateway", "10.99.0.1"), "net.gateway", "network.management.gateway", "outside"),
    ("za", _set("pools.0.nodes.3.bmc", "10.99.4.24"), "net.bmc", "pools[0].nodes[3].bmc", "outside the BMC network"),
    (
        "za",
        _set("pools.0.nodes.3.mac", "b8:3f:d2:10:00:01"),
        "net.unique",
        "pools[0].nodes[3].mac",
        "is also pools[0].nodes[0]",
    ),
    ("ma", _set("pools.1.ip_offset", "30"), "net.pool-ranges", "pools[1].ip_offset", "overlap pools[0]"),
    (
        "ng",
        _set("gpu_stack.nccl", "2.26.6-1+cuda12.8"),
        "supply.digests",
        "gpu_stack.nccl",
        "NCCL 2.26.6 for CUDA 12 on x86_64 has no known digest",
    ),
    (
        "za",
        _set("mirrors.cuda.signing_key_fingerprint", "0123456789ABCDEF0123456789ABCDEF01234567"),
        "supply.cuda-key",
        "mirrors.cuda.signing_key_fingerprint",
        "is not NVIDIA's CUDA repository key EB693B3035CD5710E231E123A4B469963BF863CC",
    ),
    (
        "za",
        _set("tenants.0.gpu_quota", "200"),
        "tenants.quota",
        "tenants",
        "quotas add up to 392 GPUs; the site has 256",
    ),
]


@pytest.mark.parametrize(("site", "change", "pid", "field", "words"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_policy_fails_on_crafted_site(site, change, pid, field, words):
    stack = crafted(site, change)
    found = findings(stack)
    assert any(f[0] == pid and f[1] == field and words in f[2] for f in found), found


def test_one_rail_per_nic():
    stack = crafted("za", lambda s: s["network"]["fabric"]["rails"].pop())
    assert (
        "net.rails",
        "network.fabric.rails",
        "7 rails, but dgx-h100 (pools[0]) has 8 compute NICs: one rail per NIC",
    ) in findings(stack)


def test_cidrs_may_not_overlap_between_sites():
    za = load_stack(ROOT, "za")
    ng = crafted("ng", _set("network.storage.cidr", "10.16.8.0/22"))
    found = findings(ng, others=[za])
    assert (
        "net.overlap-sites",
        "network.storage.cidr",
        "overlaps site za network.storage.cidr (10.16.8.0/22 / 10.16.8.0/22)",
    ) in found


def test_driver_below_the_toolkit_minimum_but_above_the_floor_is_a_warning():
    stack = crafted("ke", _set("gpu_stack.driver", "550.163.01"))
    warnings = findings(stack, Severity.WARNING)
    assert any(f[0] == "compat.cuda-driver" and "minor-version compatibility" in f[2] for f in warnings), warnings


def test_end_of_life_branch_is_a_warning_dated_by_as_of():
    lab = load_stack(ROOT, "lab")

    def warned(as_of):
        return [
            r.id for r in evaluate(lab, as_of=as_of) if r.severity is Severity.WARNING and r.id.startswith("compat")
        ]

    assert sorted(warned(date(2026, 7, 1))) == ["compat.driver-eol", "compat.operator-eol"]
    assert warned(date(2026, 6, 1)) == ["compat.operator-eol"]


def test_pod_size_larger_than_any_node_is_a_warning():
    stack = crafted("ng", _set("tenants.0.max_gpus_per_pod", "16"))
    assert (
        "tenants.pod-size",
        "tenants[0].max_gpus_per_pod",
        "16 GPUs per pod, but no node has more than 8",
    ) in findings(stack, Severity.WARNING)


def test_validate_exits_2_on_a_policy_error(workdir, cli):
    path = workdir / "stacks" / "Pulumi.eg.yaml"
    path.write_text(
        path.read_text().replace(
            'charts: {url: "https://charts.cai1.eg.aifactory.internal/nvidia"',
            'charts: {url: "https://helm.ngc.nvidia.com/nvidia"',
        )
    )
    code, out, _ = cli("validate", "eg", root=workdir)
    assert code == 2
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "charts: {url:" in text)
    assert (
        "error: stacks/Pulumi.eg.yaml: aifactory:site.mirrors.charts.url: [residency.public-service] "
        f"helm.ngc.nvidia.com is a global public service; use the in-country mirror (line {line})" in out
    )
    assert out.strip().endswith("eg: FAIL")


def test_residency_answer_for_one_site(cli):
    code, out, _ = cli("validate", "eg", "--only", "residency", "-v")
    assert code == 0
    lines = out.strip().splitlines()
    assert all("[residency." in line for line in lines[:-1])
    assert "s3.cai1.eg.aifactory.internal in EG" in out
    assert "state kept in EG" in out


def test_two_countries_cannot_claim_the_same_zone_or_range():
    za = load_stack(ROOT, "za")
    ng = crafted("ng", _set("jurisdiction.in_country.networks", ["10.32.0.0/12", "10.16.0.0/16"]))
    found = findings(ng, others=[za])
    assert (
        "residency.claims-sites",
        "jurisdiction.in_country.networks[1]",
        "10.16.0.0/16 overlaps 10.16.0.0/12, claimed by site za (ZA)",
    ) in found


def test_a_site_may_skip_a_check_with_a_reason_but_never_residency_or_secrets():
    def skip(ids):
        return lambda s: s.__setitem__(
            "policies", {"skip": [{"id": i, "reason": "accepted by the board"} for i in ids]}
        )

    eol = crafted("lab", skip(["compat.driver-eol"]))
    results = evaluate(eol, as_of=AS_OF)
    skipped = [r for r in results if r.severity is Severity.SKIPPED]
    assert [r.id for r in skipped] == ["compat.driver-eol"]
    assert "[skipped by the site: accepted by the board]" in skipped[0].message
    assert not [r for r in results if r.severity is Severity.ERROR]

    barred = crafted("lab", skip(["residency"]))
    errors = [(r.id, r.path) for r in evaluate(barred, as_of=AS_OF) if r.severity is Severity.ERROR]
    assert ("policies.skip", "aifactory:site.policies.skip[0].id") in errors
    unknown = crafted("lab", skip(["compat.no-such-check"]))
    assert any(r.id == "policies.skip" for r in evaluate(unknown, as_of=AS_OF) if r.severity is Severity.ERROR)


def _rogue(monkeypatch, policy):
    from aifactory.policies import registry

    monkeypatch.setitem(registry.REGISTRY, policy.name, policy)


def test_a_finding_under_an_undeclared_id_is_an_internal_error_not_an_ok(monkeypatch):
    from aifactory.policies import Policy, Result, UndeclaredCheck

    def run(subject):
        yield Result("tenants.quota", Severity.INFO, subject.stack.name, "aifactory:site.tenants", "declared")
        yield Result("tenants.sneaky", Severity.ERROR, subject.stack.name, "aifactory:site.tenants", "undeclared")

    _rogue(monkeypatch, Policy("rogue", "emits an id it does not declare", "site", ("tenants.quota",), run))
    with pytest.raises(UndeclaredCheck, match=r"rogue.*tenants\.sneaky"):
        evaluate(load_stack(ROOT, "lab"), as_of=AS_OF)


def test_an_undeclared_id_exits_70_from_the_cli(monkeypatch, cli):
    from aifactory.policies import Policy, Result

    def run(subject):
        yield Result("net.no-such", Severity.ERROR, subject.stack.name, "aifactory:site", "undeclared")

    _rogue(monkeypatch, Policy("rogue", "emits an id it does not declare", "site", ("net.overlap",), run))
    code, out, err = cli("validate", "lab")
    assert code == 70 and out == ""
    assert "internal error (UndeclaredCheck" in err and "net.no-such" in err


def test_every_policy_reports_only_the_ids_it_declares_on_every_site():
    """Each policy run alone, before evaluate adds its "no finding" lines: what it yields is what it declares."""
    from aifactory.policies import REGISTRY, Subject

    stacks = [load_stack(ROOT, s) for s in SITES]
    for stack in stacks:
        subject = Subject(stack, tuple(o for o in stacks if o is not stack), AS_OF)
        for policy in REGISTRY.values():
            ids = {r.id for r in policy.run(subject)}
            assert ids <= set(policy.checks), (stack.name, policy.name, ids - set(policy.checks))


def test_a_site_scoped_policy_sees_no_other_site_and_a_cross_site_one_sees_them_all(monkeypatch):
    from aifactory.policies import Policy, Result

    seen = {}

    def probe(name, check):
        def run(subject):
            seen[name] = sorted(o.name for o in subject.others)
            yield Result(check, Severity.INFO, subject.stack.name, "aifactory:site", "probed")

        return run

    _rogue(monkeypatch, Policy("probe-site", "site probe", "site", ("tenants.quota",), probe("site", "tenants.quota")))
    _rogue(
        monkeypatch,
        Policy("probe-cross", "cross probe", "cross-site", ("tenants.pod-size",), probe("cross", "tenants.pod-size")),
    )
    stacks = [load_stack(ROOT, s) for s in ("lab", "za", "ng")]
    evaluate_sites(stacks, only={"lab"}, as_of=AS_OF)
    assert seen == {"site": [], "cross": ["ng", "za"]}


def test_a_policy_of_an_unknown_scope_is_refused():
    from aifactory.policies import Policy

    with pytest.raises(ValueError, match="scope"):
        Policy("odd", "odd", "sitewide", ("tenants.quota",), lambda s: ())


def _layout_problems(registry, families):
    """What breaks the package's layout: one module per family, each module's policies in ``registry``.

    Every module of aifactory.policies but the machinery (base, registry) is a family module, named
    after its family: its policies declare check ids of that family only, and each is registered.
    """
    import importlib
    import pkgutil

    import aifactory.policies as package
    from aifactory.policies import SKIP_CHECK

    problems = []
    owners: dict[str, list[str]] = {}
    registered = set()
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in ("base", "registry"):
            continue
        declared = getattr(importlib.import_module(f"aifactory.policies.{info.name}"), "POLICIES", ())
        if not declared:
            problems.append(f"{info.name}.py declares no policies")
        for policy in declared:
            of = sorted({c.split(".")[0] for c in policy.checks})
            if of != [info.name]:
                problems.append(f"{info.name}.py: policy {policy.name} declares checks of {of}")
            if registry.get(policy.name) is not policy:
                problems.append(f"{info.name}.py: policy {policy.name} is not in the registry")
            registered.add(policy.name)
            for family in of:
                owners.setdefault(family, []).append(info.name)
    problems += [f"policy {name} belongs to no family module" for name in sorted(set(registry) - registered)]
    for family in families:
        modules = sorted(set(owners.get(family, [])))
        # The skip check's family is the registry's own; every other is its module's alone.
        if modules != ([] if family == SKIP_CHECK.split(".")[0] else [family]):
            problems.append(f"family {family} is declared by {modules or 'no family module'}")
    problems += [f"family {f} is in no registered policy" for f in sorted(set(owners) - set(families))]
    return problems


def test_every_family_is_one_module_and_every_module_is_registered():
    from aifactory.policies import CHECK_IDS, FAMILIES, REGISTRY, SKIP_CHECK, registry

    assert _layout_problems(REGISTRY, FAMILIES) == []
    assert {c.split(".")[0] for c in CHECK_IDS} == set(FAMILIES)
    # The order the registry's docstring documents is the order it runs the modules in.
    names = ", ".join(m.__name__.rsplit(".", 1)[1] for m in registry.FAMILY_MODULES)
    assert f"\n    {names}\n" in registry.__doc__
    # A family module left out of the registry: its policies run nowhere, and this says so.
    left_out = {n: p for n, p in REGISTRY.items() if not p.checks[0].startswith("tenants.")}
    families = sorted({c.split(".")[0] for p in left_out.values() for c in p.checks} | {SKIP_CHECK.split(".")[0]})
    assert _layout_problems(left_out, families) == [
        "tenants.py: policy tenants is not in the registry",
        "tenants.py: policy tenant-isolation is not in the registry",
        "family tenants is in no registered policy",
    ]


def test_every_declared_id_leaves_a_line_on_every_site():
    from aifactory.policies import CHECK_IDS

    stacks = [load_stack(ROOT, s) for s in SITES]
    for stack in stacks:
        reported = {r.id for r in evaluate_sites(stacks, only={stack.name}, as_of=AS_OF)}
        assert reported == set(CHECK_IDS), stack.name


def test_validate_only_an_unknown_policy_is_bad_input(cli):
    code, out, err = cli("validate", "za", "--only", "residnecy")
    assert (code, out) == (2, "")
    assert err.startswith("error: --only: 'residnecy' is no policy")


def test_validate_a_site_twice_validates_it_once(cli):
    code, out, _ = cli("validate", "za", "za")
    assert code == 0
    assert [line for line in out.splitlines() if not line.startswith("warning")] == ["za: ok"]


def test_a_country_stack_keyed_with_the_lab_passphrase_is_refused(workdir, cli):
    lab = (workdir / "stacks" / "Pulumi.lab.yaml").read_text()
    salt = next(line for line in lab.splitlines() if line.startswith("encryptionsalt:"))
    path = workdir / "stacks" / "Pulumi.ke.yaml"
    text = path.read_text()
    old = next(line for line in text.splitlines() if line.startswith("encryptionsalt:"))
    path.write_text(text.replace(old, salt))
    code, _, _ = cli("validate", "ke", root=workdir)
    assert code == 2
    code, out, err = cli("plan", "ke", root=workdir)
    assert (code, out) == (2, "")
    assert "stacks/Pulumi.ke.yaml: encryptionsalt: [secrets.lab-passphrase]" in err
