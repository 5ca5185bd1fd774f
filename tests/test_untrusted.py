"""A stack file is untrusted input: a corpus of mutated stacks, each refused by every command that reads it.

Each case breaks the lab stack in one way (a grammar, a bound, a policy, the bytes of the file)
and names the field path the refusal must point at. For every command that reads a stack the
test asserts: exit 2, error lines naming the stack file (and the field), no traceback, nothing on
standard output, and not one file written or changed in the checkout.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT

LAB = "stacks/Pulumi.lab.yaml"
S = "aifactory:site."
C = "aifactory:bmcCredentials."


def _doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / LAB).read_text())


def at(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set a dotted path under aifactory:site (digits index lists); '!' + path sets from the file's root."""

    def change(doc: dict[str, Any]) -> None:
        node: Any = doc if path.startswith("!") else doc["config"]["aifactory:site"]
        keys = path.lstrip("!").split(".")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        node[int(last) if last.isdigit() else last] = value

    return change


def text(old: str, new: str) -> Callable[[str], str]:
    def change(t: str) -> str:
        assert old in t, old
        return t.replace(old, new, 1)

    return change


TEMPLATE = "{{ lookup('pipe', 'touch /tmp/aifactory-pwned') }}"
JINJA_BLOCK = "{% for x in range(3) %}x{% endfor %}"
LONG = "x" * 50_000_000

# (case id, mutation of the parsed doc or of the file's text, the field path the error must name)
DOC_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    # identifiers and names
    ("code-trailing-newline", at("code", "lab\n"), S + "code"),
    ("code-too-long", at("code", "l" * 300), S + "code"),
    ("code-upper", at("code", "LAB"), S + "code"),
    ("name-newline", at("name", "Lab\nerror: forged line"), S + "name"),
    ("name-control", at("name", "Lab\x1b[2J"), S + "name"),
    ("name-50mb", at("name", LONG), S + "name"),
    ("law-tab", at("jurisdiction.law", "POPIA\tsection 72"), S + "jurisdiction.law"),
    ("regulator-empty", at("jurisdiction.regulator", ""), S + "jurisdiction.regulator"),
    ("residency-lower", at("jurisdiction.data_residency", "za"), S + "jurisdiction.data_residency"),
    ("country-unknown", at("country", "XX"), S + "country"),
    ("city-newline", at("location.city", "Johannesburg\n"), S + "location.city"),
    ("context-space", at("kubernetes.context", "lab; kubectl delete ns"), S + "kubernetes.context"),
    ("context-template", at("kubernetes.context", TEMPLATE), S + "kubernetes.context"),
    ("pool-name-newline", at("pools.0.name", "gpu\n"), S + "pools[0].name"),
    ("pool-name-template", at("pools.0.name", TEMPLATE), S + "pools[0].name"),
    ("sku-unknown", at("pools.0.sku", "dgx-a100"), S + "pools[0].sku"),
    ("tenant-trailing-newline", at("tenants.0.name", "research\n"), S + "tenants[0].name"),
    ("tenant-display-newline", at("tenants.0.display_name", "Lab\nrm -rf /"), S + "tenants[0].display_name"),
    (
        "bucket-upper",
        at("storage.object_store.buckets.0.name", "Lab-Datasets"),
        S + "storage.object_store.buckets[0].name",
    ),
    ("bucket-ip", at("storage.object_store.buckets.0.name", "192.168.1.1"), S + "storage.object_store.buckets[0].name"),
    (
        "bucket-purpose-newline",
        at("storage.object_store.buckets.0.purpose", "a\nb"),
        S + "storage.object_store.buckets[0].purpose",
    ),
    ("region-space", at("storage.object_store.region", "lab region"), S + "storage.object_store.region"),
    ("class-name", at("storage.classes.0.name", "Local_NVMe"), S + "storage.classes[0].name"),
    ("provisioner-shell", at("storage.classes.0.provisioner", "x$(id)"), S + "storage.classes[0].provisioner"),
    (
        "class-param-newline",
        at("storage.classes.0.parameters", {"fsname": "a\nb"}),
        S + "storage.classes[0].parameters.fsname",
    ),
    ("class-param-key", at("storage.classes.0.parameters", {"bad key": "v"}), S + "storage.classes[0].parameters"),
    ("mig-profile-template", at("gpu_stack.mig.default_profile", TEMPLATE), S + "gpu_stack.mig.default_profile"),
    (
        "skip-reason-newline",
        at("policies", {"skip": [{"id": "compat.driver-eol", "reason": "a\nb"}]}),
        S + "policies.skip[0].reason",
    ),
    ("skip-residency", at("policies", {"skip": [{"id": "residency", "reason": "we know"}]}), S + "policies.skip[0].id"),
    ("skip-unknown", at("policies", {"skip": [{"id": "compat.typo", "reason": "we know"}]}), S + "policies.skip[0].id"),
    # host names and interfaces
    ("scheme-attribute", at("pools.0.hostname", "{pool.__class__.__name__}-{index}"), S + "pools[0].hostname"),
    ("scheme-thousands", at("pools.0.hostname", "{site}-{index:,}"), S + "pools[0].hostname"),
    ("scheme-no-index", at("pools.0.hostname", "{site}-gpu"), S + "pools[0].hostname"),
    ("scheme-conversion", at("pools.0.hostname", "{site!r}-{index}"), S + "pools[0].hostname"),
    ("scheme-unknown-field", at("pools.0.hostname", "{country}-{index}"), S + "pools[0].hostname"),
    ("scheme-upper", at("pools.0.hostname", "{site}-GPU-{index}"), S + "pools[0].hostname"),
    ("scheme-too-long", at("pools.0.hostname", "{site}-" + "g" * 60 + "-{index}"), S + "pools[0].hostname"),
    ("scheme-align-spec", at("pools.0.hostname", "{site}-{index:>5}"), S + "pools[0].hostname"),
    ("scheme-renders-dot-dash", at("pools.0.hostname", "{site}-{index}-"), S + "pools[0].hostname"),
    ("domain-single", at("network.domain", "internal"), S + "network.domain"),
    ("domain-newline", at("network.domain", "lab.aifactory.internal\n"), S + "network.domain"),
    ("iface-semicolon", at("network.management.interface", "ibp0s0; reboot #"), S + "network.management.interface"),
    (
        "iface-newline",
        at("network.management.interface", "host0\nNCCL_NET_PLUGIN=/tmp/evil.so"),
        S + "network.management.interface",
    ),
    ("iface-long", at("network.management.interface", "a" * 16), S + "network.management.interface"),
    ("iface-dotdot", at("network.management.interface", ".."), S + "network.management.interface"),
    ("iface-template", at("network.management.interface", "{{x}}"), S + "network.management.interface"),
    ("rail-hca-upper", at("network.fabric.rails.0.hca", "MLX5_0"), S + "network.fabric.rails[0].hca"),
    ("rail-hca-newline", at("network.fabric.rails.0.hca", "mlx5_0\n"), S + "network.fabric.rails[0].hca"),
    ("rail-iface-space", at("network.fabric.rails.0.interface", "ibp 0"), S + "network.fabric.rails[0].interface"),
    ("ntp-shell", at("network.ntp.0", "$(id).example"), S + "network.ntp[0]"),
    ("ntp-idna-bad", at("network.ntp.0", "xn--a.lab"), S + "network.ntp[0]"),
    # URLs and registries
    (
        "debian-trusted",
        at("mirrors.debian.url", "http://172.29.0.1:3142/deb.debian.org/debian\nTrusted: yes"),
        S + "mirrors.debian.url",
    ),
    ("debian-space", at("mirrors.debian.url", "http://172.29.0.1:3142/debian [trusted=yes]"), S + "mirrors.debian.url"),
    ("cuda-template", at("mirrors.cuda.url", "http://172.29.0.1/{{ lookup('pipe','id') }}"), S + "mirrors.cuda.url"),
    (
        "artifacts-userinfo",
        at("mirrors.artifacts.url", "http://user:pw@172.29.0.1:8081/nvidia"),
        S + "mirrors.artifacts.url",
    ),
    ("artifacts-scheme", at("mirrors.artifacts.url", "ftp://172.29.0.1/nvidia"), S + "mirrors.artifacts.url"),
    ("charts-bad-port", at("mirrors.charts.url", "http://172.29.0.1:99999/charts"), S + "mirrors.charts.url"),
    ("charts-no-host", at("mirrors.charts.url", "http:///charts"), S + "mirrors.charts.url"),
    (
        "fingerprint-lower",
        at("mirrors.cuda.signing_key_fingerprint", "eb693b3035cd5710e231e123a4b469963bf863cc"),
        S + "mirrors.cuda.signing_key_fingerprint",
    ),
    (
        "fingerprint-newline",
        at("mirrors.cuda.signing_key_fingerprint", "EB693B3035CD5710E231E123A4B469963BF863CC\n"),
        S + "mirrors.cuda.signing_key_fingerprint",
    ),
    ("registry-scheme", at("mirrors.containers.host", "https://172.29.0.1:5000"), S + "mirrors.containers.host"),
    ("registry-space", at("mirrors.containers.host", "172.29.0.1:5000 --insecure"), S + "mirrors.containers.host"),
    ("store-newline", at("storage.object_store.url", "http://172.29.0.1:9000\n"), S + "storage.object_store.url"),
    ("state-scheme", at("state_backend.url", "gs://bucket"), S + "state_backend.url"),
    # versions
    (
        "driver-fullwidth",
        at("gpu_stack.driver", "\uff15\uff18\uff10.\uff19\uff15.\uff10\uff15"),
        S + "gpu_stack.driver",
    ),
    ("driver-arabic-digits", at("gpu_stack.driver", "\u0665\u0663\u0665.261.03"), S + "gpu_stack.driver"),
    ("driver-newline", at("gpu_stack.driver", "535.261.03\n"), S + "gpu_stack.driver"),
    ("driver-glob", at("gpu_stack.driver", "535.*"), S + "gpu_stack.driver"),
    ("cuda-float", at("gpu_stack.cuda", 11.8), S + "gpu_stack.cuda"),
    ("nccl-newline", at("gpu_stack.nccl", "2.21.5-1+cuda11.0\n"), S + "gpu_stack.nccl"),
    ("operator-no-v", at("gpu_stack.gpu_operator", "25.10.1"), S + "gpu_stack.gpu_operator"),
    ("netop-template", at("gpu_stack.network_operator", "{{7*7}}"), S + "gpu_stack.network_operator"),
    # numbers and bounds
    ("ip-offset-zero", at("pools.0.ip_offset", 0), S + "pools[0].ip_offset"),
    ("ip-offset-huge", at("pools.0.ip_offset", 10**400), S + "pools[0].ip_offset"),
    (
        "lock-days-huge",
        at("storage.object_store.buckets.1.object_lock_days", 10**400),
        S + "storage.object_store.buckets[1].object_lock_days",
    ),
    (
        "lock-days-float",
        at("storage.object_store.buckets.1.object_lock_days", 1e400),
        S + "storage.object_store.buckets[1].object_lock_days",
    ),
    ("vlan-4095", at("network.bmc.vlan", 4095), S + "network.bmc.vlan"),
    ("mtu-low", at("network.fabric.mtu", 100), S + "network.fabric.mtu"),
    ("gid-index-huge", at("network.fabric.roce_gid_index", 100000), S + "network.fabric.roce_gid_index"),
    ("quota-negative", at("tenants.0.gpu_quota", -1), S + "tenants[0].gpu_quota"),
    ("quota-string", at("tenants.0.gpu_quota", "eight"), S + "tenants[0].gpu_quota"),
    ("pod-gpus-zero", at("tenants.0.max_gpus_per_pod", 0), S + "tenants[0].max_gpus_per_pod"),
    # addresses
    ("cidr-host-bits", at("network.storage.cidr", "172.29.2.7/24"), S + "network.storage.cidr"),
    ("cidr-newline", at("network.storage.cidr", "172.29.2.0/24\n"), S + "network.storage.cidr"),
    ("bmc-not-ip", at("pools.0.nodes.0.bmc", "bmc-1.lab"), S + "pools[0].nodes[0].bmc"),
    ("mac-short", at("pools.0.nodes.0.mac", "02:a1:f0:00:11"), S + "pools[0].nodes[0].mac"),
    ("dns-name", at("network.dns.0", "dns.lab.aifactory.internal"), S + "network.dns[0]"),
    ("unknown-key", at("colour", "blue"), S + "colour"),
    # policies: refused by the gate, not the grammar
    (
        "foreign-store",
        at("storage.object_store.url", "https://s3.eu-west-1.amazonaws.com."),
        S + "storage.object_store.url",
    ),
    (
        "foreign-mirror-declared-home",
        at("mirrors.debian.url", "http://ftp.uni-erlangen.de/debian"),
        S + "mirrors.debian.url",
    ),
    (
        "state-endpoint-scheme",
        at("state_backend.url", "s3://s/x?endpoint=https://s3.amazonaws.com"),
        S + "state_backend.url",
    ),
    ("state-aws", at("state_backend.url", "s3://lab-state/aifactory"), S + "state_backend.url"),
    ("driver-too-old", at("gpu_stack.driver", "470.256.02"), S + "pools[0].sku"),
    ("cidr-overlap", at("network.storage.cidr", "172.29.0.0/24"), S + "network.storage.cidr"),
    ("mac-duplicate", at("pools.0.nodes.1.mac", "02:a1:f0:00:00:11"), S + "pools[0].nodes[1].mac"),
    ("quota-too-big", at("tenants.0.gpu_quota", 100_000), S + "tenants"),
    ("ntp-public", at("network.ntp.0", "pool.ntp.org"), S + "network.ntp[0]"),
    (
        "suffix-public",
        at("jurisdiction.in_country.dns_suffixes", ["amazonaws.com"]),
        S + "jurisdiction.in_country.dns_suffixes[0]",
    ),
    # credentials and secrets
    ("password-plaintext", at("!config.aifactory:bmcCredentials.gpu.password", "hunter2"), C + "gpu.password"),
    (
        "password-fake-cipher",
        at("!config.aifactory:bmcCredentials.gpu.password", {"secure": "v1:AAAA:AAAA"}),
        C + "gpu.password.secure",
    ),
    ("username-newline", at("!config.aifactory:bmcCredentials.gpu.username", "admin\nroot"), C + "gpu.username"),
    ("salt-malformed", at("!encryptionsalt", "v1:AAAA:bad"), "encryptionsalt"),
    ("secrets-provider", at("!secretsprovider", "awskms://alias/x"), "secretsprovider"),
]

TEXT_CASES: list[tuple[str, Callable[[str], str], str]] = [
    ("duplicate-key", text("    code: lab\n", "    code: lab\n    code: za\n"), "line 11"),
    ("duplicate-key-nested", text("      law: ", "      law: x\n      law: "), "duplicate key 'law'"),
    ("int-key", text("    code: lab\n", "    code: lab\n    1: one\n"), "line 11"),
    ("bool-key", text("    code: lab\n", "    code: lab\n    yes: one\n"), "line 11"),
    ("alias", text("    code: lab\n", "    code: &c lab\n"), "line 10"),
    ("merge-key", text("    code: lab\n", "    code: lab\n    <<: {colour: blue}\n"), "line 11"),
    ("yaml-syntax", text("    code: lab\n", "    code: [lab\n"), "line "),
    ("python-tag", text("    code: lab\n", "    code: !!python/object/apply:os.system [id]\n"), "line 10"),
    ("two-documents", lambda t: t + "---\nconfig: {}\n", ""),
    ("nul-byte", text("    code: lab\n", "    code: la\x00b\n"), ""),
    (
        "deep-nesting",
        lambda t: t.replace("    code: lab\n", "    code: " + "[" * 5000 + "]" * 5000 + "\n", 1),
        "nested deeper",
    ),
    ("top-level-list", lambda t: "- a\n- b\n", ""),
    ("empty-file", lambda t: "", ""),
]

BYTE_CASES: list[tuple[str, bytes, str]] = [
    ("binary", bytes(range(256)) * 4, "not UTF-8"),
    ("latin-1", "config:\n  aifactory:site:\n    name: Marrakech-Safi \xe9\n".encode("latin-1"), "not UTF-8"),
]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout a case may break: stacks, inventories and templates."""
    root = tmp_path / "co"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    for d in ("stacks", "inventories", "templates"):
        shutil.copytree(ROOT / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _commands(out: Path) -> list[list[str]]:
    return [
        ["validate", "lab"],
        ["plan", "lab"],
        ["inventory", "lab"],
        ["bootstrap", "lab"],
        ["verify", "lab"],
        ["audit", "lab", "--out", str(out)],
        ["diff", "lab", "za", "--plan"],
    ]


def _refused_everywhere(cli, root: Path, field: str, tmp_path: Path) -> None:
    before = _files(root)
    for command in _commands(tmp_path / "audit-out"):
        code, out, err = cli(*command, root=root)
        shown = f"{command[0]}: exit {code}\nstdout: {out[-400:]}\nstderr: {err[-800:]}"
        assert code == 2, shown
        assert "Traceback" not in out + err, shown
        if command[0] == "validate":
            # validate reports policy findings on standard output, load errors on standard error
            lines = [ln for ln in (out + err).splitlines() if ln.strip() and ln.strip() != "lab: FAIL"]
            errors = [ln for ln in lines if ln.startswith(("error", "warning", "skipped"))]
        else:
            assert out == "", shown
            lines = err.strip().splitlines()
            errors = [ln for ln in lines if ln.startswith("error: ")]
            assert all(ln.startswith(("error: ", "warning: ")) for ln in lines), shown
        assert errors, shown
        assert all(LAB in ln for ln in errors), shown
        assert any(field in ln for ln in errors), f"no line names {field!r}\n{shown}"
        assert all(len(ln) < 1000 for ln in lines), "a value was echoed whole"
    assert _files(root) == before, "a refused stack wrote or changed a file"
    assert not (tmp_path / "audit-out").exists()


@pytest.mark.parametrize(("case", "change", "field"), DOC_CASES, ids=[c[0] for c in DOC_CASES])
def test_mutated_stack_is_refused_by_every_command(case, change, field, checkout, cli, tmp_path):
    doc = copy.deepcopy(_doc())
    change(doc)
    (checkout / LAB).write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10**9))
    _refused_everywhere(cli, checkout, field, tmp_path)


@pytest.mark.parametrize(("case", "change", "field"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_malformed_stack_file_is_refused_by_every_command(case, change, field, checkout, cli, tmp_path):
    path = checkout / LAB
    path.write_text(change(path.read_text()))
    _refused_everywhere(cli, checkout, field, tmp_path)


@pytest.mark.parametrize(("case", "data", "words"), BYTE_CASES, ids=[c[0] for c in BYTE_CASES])
def test_bad_bytes_are_refused_and_spare_the_other_sites(case, data, words, checkout, cli, tmp_path):
    (checkout / LAB).write_bytes(data)
    _refused_everywhere(cli, checkout, words, tmp_path)
    # A broken neighbour never breaks another site's commands.
    (checkout / "stacks" / "Pulumi.ma.yaml").write_bytes(data)
    code, out, err = cli("validate", "za", root=checkout)
    assert (code, out.strip().splitlines()[-1]) == (0, "za: ok"), err
    code, out, err = cli("sites", root=checkout)
    assert code == 2
    assert "\nza " in out and "\nke " in out
    assert f"error: {LAB}: {words}" in err and "error: stacks/Pulumi.ma.yaml: " in err


def test_the_corpus_is_large_and_covers_every_field_class():
    assert len(DOC_CASES) + len(TEXT_CASES) + len(BYTE_CASES) >= 80
    classes = {
        "identifiers": "name",
        "hosts": "hostname",
        "urls": "url",
        "versions": "gpu_stack",
        "bounds": "ip_offset",
    }
    for what, word in classes.items():
        assert any(word in c[2] for c in DOC_CASES), what


# -- command-line arguments ----------------------------------------------------------------------

BAD_SITE_ARGS = ["../../etc", "", "lab/../za", "a" * 300, "lab\nerror: forged", "-rf", "LAB", "lab.yaml"]


@pytest.mark.parametrize("name", BAD_SITE_ARGS, ids=range(len(BAD_SITE_ARGS)))
@pytest.mark.parametrize("command", ["validate", "plan", "inventory", "bootstrap", "verify", "secret", "audit"])
def test_bad_site_argument_is_refused_before_any_file(name, command, cli, checkout, tmp_path, capsys):
    before = _files(checkout)
    args = {"secret": ["secret", "encrypt", name], "audit": ["audit", name, "--out", str(tmp_path / "o")]}.get(
        command, [command, name]
    )
    try:
        code, out, err = cli(*args, root=checkout)
    except SystemExit as exc:  # argparse: a name that looks like an option ("-rf") is a usage error
        code, (out, err) = exc.code, capsys.readouterr()
        assert "unrecognized arguments" in err or "the following arguments are required" in err
    else:
        assert len(err.strip().splitlines()) == 1, err
        assert "is not a site code" in err
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert _files(checkout) == before


@pytest.mark.parametrize("name", ["../../tmp/x", "", "a" * 300])
def test_testhosts_site_is_checked_before_it_names_a_folder(name, cli, tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    code, _, err = cli("testhosts", "down", "--site", name)
    assert code == 2
    assert err.startswith("error: --site: ") and "is not a site code" in err
    assert (victim / "keep").is_file()


@pytest.mark.parametrize("rev", ["--output=/tmp/aifactory-git-wrote-this", "-p", "HEAD:../../etc/passwd", ""])
def test_revisions_are_never_options_to_git(rev, cli, tmp_path):
    target = Path("/tmp/aifactory-git-wrote-this")
    target.unlink(missing_ok=True)
    for option, args in (
        ("--rev", ["diff", "lab", f"--rev={rev}"]),
        ("--against", ["audit", "lab", "--out", str(tmp_path / "o"), f"--against={rev}"]),
    ):
        code, out, err = cli(*args)
        assert code == 2, err
        assert err.startswith(f"error: {option}: "), err
    assert not target.exists()


def test_audit_does_not_follow_a_planted_link(cli, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted = {
        p for name in ("audit-lab.html", "audit-lab.md") for p in (f".{name}.tmp", f"{name}.tmp", "audit-lab.tmp")
    }
    for name in sorted(planted):
        os.symlink(victim, out / name)
    code, _, err = cli("audit", "lab", "--out", str(out), "--as-of", "2026-05-01")
    assert code == 0, err
    assert victim.read_text() == "precious"
    assert (out / "audit-lab.md").is_file() and not (out / "audit-lab.md").is_symlink()
    os.symlink(victim, out / "audit-lab.html.lnk")
    (out / "audit-lab.html").unlink()
    os.symlink(victim, out / "audit-lab.html")
    code, _, err = cli("audit", "lab", "--out", str(out), "--as-of", "2026-05-01")
    assert code == 2 and "not a regular file" in err
    assert victim.read_text() == "precious"


def test_audit_out_onto_a_file_is_bad_input(cli, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, out, err = cli("audit", "lab", "--out", str(f))
    assert (code, out) == (2, "")
    assert err.strip() == f"error: --out: {f} exists and is not a directory"


def test_verify_parallel_zero_is_bad_input(capsys):
    from aifactory.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["verify", "lab", "--parallel", "0"])
    assert exc.value.code == 2
    assert "0 is not between 1 and 256" in capsys.readouterr().err


# -- the Pulumi program: `pulumi up` has the same gate ----------------------------------------------


def _run_program(root: Path, monkeypatch, config_text: str | None = None) -> None:
    """Run the program as `pulumi up -s lab` would, under Pulumi's mock runtime; config from the file or given."""
    import json

    from pulumi.runtime import mocks
    from pulumi.runtime.config import set_all_config
    from pulumi.runtime.settings import reset_options

    from aifactory import program
    from aifactory.plan import _Mocks
    from aifactory.stackfile import CREDENTIALS_KEY, PROJECT, SITE_KEY

    monkeypatch.setenv("AIFACTORY_ROOT", str(root))
    doc = yaml.safe_load(config_text or (root / LAB).read_text())
    reset_options(project=PROJECT, stack="lab", preview=True)
    mocks.set_mocks(_Mocks(), project=PROJECT, stack="lab", preview=True)
    set_all_config(
        {
            SITE_KEY: json.dumps(doc["config"][SITE_KEY]),
            CREDENTIALS_KEY: json.dumps({"gpu": {"username": "admin", "password": "x"}}),
        },
        [CREDENTIALS_KEY],
    )
    program.main()


def test_pulumi_up_refuses_a_stack_the_policies_refuse(checkout, monkeypatch):
    import pulumi

    path = checkout / LAB
    path.write_text(path.read_text().replace("url: http://172.29.0.1:9000", "url: https://s3.eu-west-1.amazonaws.com"))
    with pytest.raises(pulumi.RunError) as exc:
        _run_program(checkout, monkeypatch)
    message = str(exc.value)
    assert "does not pass aifactory's checks" in message
    assert f"{LAB}: aifactory:site.storage.object_store.url: [residency.public-service]" in message


def test_pulumi_up_refuses_config_that_differs_from_the_stack_file(checkout, monkeypatch):
    import pulumi

    checked = (checkout / LAB).read_text()
    (checkout / LAB).write_text(checked.replace("gpu_quota: 8,", "gpu_quota: 4,", 1))
    with pytest.raises(pulumi.RunError) as exc:
        _run_program(checkout, monkeypatch, config_text=checked)
    assert "differs from stacks/Pulumi.lab.yaml" in str(exc.value)


def test_pulumi_up_runs_on_a_stack_that_passes(monkeypatch):
    import pulumi

    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        _run_program(ROOT, monkeypatch)  # no RunError: the real lab stack passes the same gate
        return pulumi.Output.from_input(None)

    program()  # waits for every registration the program made
