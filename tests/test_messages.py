"""Errors for people: host names and lines beside index paths, repeats folded with a count in numeric
order, capacity errors that say what would fit, values echoed as the file wrote them, and each warning
printed once per command in one format."""

from __future__ import annotations

import re
from pathlib import Path

ZA = "stacks/Pulumi.za.yaml"
LAB = "stacks/Pulumi.lab.yaml"


def _edit(workdir: Path, site: str, old: str, new: str) -> Path:
    path = workdir / "stacks" / f"Pulumi.{site}.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def test_a_node_error_names_its_host_and_line_and_echoes_the_value_as_written(workdir, cli):
    path = _edit(workdir, "lab", 'mac: "02:a1:f0:00:00:12"', 'mac: "02:A1:F0:00:12"')
    code, out, err = cli("validate", "lab", root=workdir)
    assert (code, out) == (2, "")
    line = _line_of(path, "02:A1:F0:00:12")
    assert err.strip() == (
        f"error: {LAB}: aifactory:site.pools[0].nodes[1].mac: '02:A1:F0:00:12' is not a MAC address "
        f"(aa:bb:cc:dd:ee:ff) (lab-gpu-02, line {line})"
    )


def test_a_duplicate_mac_is_echoed_as_the_file_wrote_it(workdir, cli):
    path = _edit(workdir, "lab", 'mac: "02:a1:f0:00:00:12"', 'mac: "02:A1:F0:00:00:11"')
    code, out, _ = cli("validate", "lab", root=workdir)
    assert code == 2
    line = _line_of(path, "02:A1:F0:00:00:11")
    assert (
        f"error: {LAB}: aifactory:site.pools[0].nodes[1].mac: [net.unique] 02:A1:F0:00:00:11 is also "
        f"pools[0].nodes[0] (lab-gpu-02, line {line})"
    ) in out.splitlines()


def test_a_too_small_subnet_is_one_line_with_a_count_and_the_first_places_in_numeric_order(workdir, cli):
    path = _edit(workdir, "za", "bmc: {cidr: 10.16.4.0/22,", "bmc: {cidr: 10.16.4.0/28,")
    code, out, _ = cli("validate", "za", root=workdir)
    assert code == 2
    bmc = [line for line in out.splitlines() if "[net.bmc]" in line]
    first = _line_of(path, "bmc: 10.16.4.21,")
    assert bmc == [
        f"error: {ZA}: aifactory:site.pools[*].nodes[*].bmc: [net.bmc] … is outside the BMC network 10.16.4.0/28: "
        f"32 nodes: za-jnb1-h100-001 line {first}: 10.16.4.21; za-jnb1-h100-002 line {first + 1}: 10.16.4.22; "
        f"za-jnb1-h100-003 line {first + 2}: 10.16.4.23; and 29 more"
    ]


def test_findings_fold_in_numeric_order_not_text_order():
    from aifactory.errors import Problem
    from aifactory.findings import fold

    problems = [Problem("f", f"a.nodes[{i}].bmc", f"10.0.0.{i} is outside 10.1.0.0/24", i + 1) for i in (10, 3, 11, 2)]
    assert fold(problems) == [
        "f: a.nodes[*].bmc: … is outside 10.1.0.0/24: 4 places: "
        "a.nodes[2].bmc line 3: 10.0.0.2; a.nodes[3].bmc line 4: 10.0.0.3; a.nodes[10].bmc line 11: 10.0.0.10; and 1 more"
    ]
    # Unlike messages on one field are not folded into one template.
    unlike = [Problem("f", f"x[{i}]", m) for i, m in enumerate(["unknown key", "required key is missing"])]
    assert fold(unlike) == ["f: x[0]: unknown key", "f: x[1]: required key is missing"]


def test_capacity_errors_say_the_smallest_prefix_that_fits(workdir, cli):
    _edit(workdir, "za", "management: {cidr: 10.16.0.0/22,", "management: {cidr: 10.16.0.0/27,")
    _edit(workdir, "za", "{name: rail0, cidr: 10.17.0.0/23}", "{name: rail0, cidr: 10.17.0.0/24}")
    _edit(workdir, "za", "pods: 10.18.0.0/15", "pods: 10.18.0.0/20")
    code, out, _ = cli("validate", "za", "--only", "net.capacity", root=workdir)
    assert code == 2
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert any(
        "network.management.cidr: [net.capacity] 10.16.0.0/27 has 30 host addresses; the pools need host number 52; "
        "the smallest that fits is a /26 (10.16.0.0/26)" in e
        for e in errors
    ), errors
    assert any(
        "rails[0].cidr: [net.capacity] 10.17.0.0/24 holds 31 blocks of 8 for 32 nodes" in e
        and e.split(" (line ")[0].endswith("the smallest that fits is a /23 (10.17.0.0/23)")
        for e in errors
    ), errors
    assert any(
        "network.pods: [net.capacity] 10.18.0.0/20 holds 16 node /24 blocks for 32 nodes; "
        "the smallest that fits is a /19 (10.18.0.0/19)" in e
        for e in errors
    ), errors


_EOL = re.compile(
    r"^warning: (\S+: )?aifactory:site\.gpu_stack\.gpu_operator: \[compat\.operator-eol\] gpu-operator \S+ is past"
)


def test_each_warning_is_printed_once_per_command_in_one_format(cli):
    code, out, _ = cli("validate")
    assert code == 0
    eol = [line for line in out.splitlines() if "[compat.operator-eol]" in line]
    assert len(eol) == 1 and "7 stacks: " in eol[0], eol
    assert _EOL.match(eol[0].replace("…", "25.10.x")), eol
    # The same warning from the gate of another command, in the same format.
    code, _, err = cli("plan", "lab")
    assert code == 0
    gate = [line for line in err.splitlines() if "[compat.operator-eol]" in line]
    assert len(gate) == 1 and _EOL.match(gate[0]), gate
    # Two sides of one plan diff that share a warning print it once.
    code, _, err = cli("diff", "ke", "--rev", "HEAD", "--plan")  # older revisions fail today's tenant rules
    assert code == 0, err
    assert len([line for line in err.splitlines() if "[compat.operator-eol]" in line]) == 1, err


def test_lab_validates_then_gates_and_says_each_warning_once(capsys):
    """`aifactory lab` validates, then puts the site through the gate: one command, each warning once."""
    from aifactory import findings
    from aifactory.cli.common import gated
    from aifactory.cli.sitedata import validate_sites

    from .conftest import ROOT

    findings.begin_command()
    assert validate_sites(ROOT, ["lab"])
    gated(ROOT, ["lab"])
    out, err = capsys.readouterr()
    assert len([line for line in (out + err).splitlines() if "[compat.operator-eol]" in line]) == 1


def test_lines_are_found_in_block_and_flow_style_and_after_an_upgrade_step_changed_a_mapping():
    from aifactory.locations import Locator, Positions
    from aifactory.stackfile import parse_yaml

    text = (
        "config:\n"  # 1
        "  aifactory:site:\n"  # 2
        "    pools:\n"  # 3
        "      - name: a\n"  # 4
        "        nodes:\n"  # 5
        "          - {bmc: 10.0.0.1, mac: x}\n"  # 6
        "          - bmc: 10.0.0.2\n"  # 7
        "            mac: y\n"  # 8
    )
    positions = Positions()
    doc = parse_yaml(text, "f", positions)
    where = Locator(doc, positions)
    assert where.line("aifactory:site.pools[0].nodes[0].mac") == 6
    assert where.line("aifactory:site.pools[0].nodes[1].bmc") == 7
    assert where.line("aifactory:site.pools[0].nodes[1].mac") == 8
    assert where.line("aifactory:site.pools[0].nodes[1].missing") == 7  # the nearest line that exists
    assert where.line("aifactory:site.pools[0].nodes[5].mac") == 5
    node = doc["config"]["aifactory:site"]["pools"][0]["nodes"][1]
    node["su"] = "su1"  # a step added a key: the mapping answers with its own line, never a wrong one
    assert where.line("aifactory:site.pools[0].nodes[1].mac") == 7


def test_a_host_is_echoed_as_written_not_as_its_lower_case_form(workdir, cli):
    _edit(workdir, "lab", "ntp: [172.29.0.1]", "ntp: [NTP_1.Lab.Example]")
    _edit(workdir, "lab", 'ubuntu: {url: "http://172.29.0.1:3142', 'ubuntu: {url: "http://Mirror_A.Lab:3142')
    code, _, err = cli("validate", "lab", root=workdir)
    assert code == 2
    assert "aifactory:site.network.ntp[0]: 'NTP_1.Lab.Example' is not a host name" in err
    assert "aifactory:site.mirrors.ubuntu.url: 'http://Mirror_A.Lab:3142/" in err and "has no valid host" in err
