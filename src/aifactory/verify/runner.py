"""`aifactory verify`: run the node suite on a site's nodes in parallel and report nodes x checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..inventory import check_current, hosts_matching
from ..model import NodeView
from ..stackfile import Stack
from .expectations import expectations

SUITE = Path(__file__).with_name("suite")
PASS, FAIL, SKIP = "pass", "FAIL", "skip"


@dataclass(frozen=True)
class CheckResult:
    status: str
    message: str = ""


@dataclass
class NodeResult:
    node: NodeView
    checks: dict[str, CheckResult] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    # Values a check recorded for the checks across nodes (record_property): the tray's NVLink clique.
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.error) or any(c.status == FAIL for c in self.checks.values())


def select(stack: Stack, root: Path, limit: str | None) -> list[NodeView]:
    """The nodes an Ansible host pattern selects (the meaning --limit has in bootstrap too).

    The inventory must be exactly what the stack renders, limit or not: verify's expectations and
    bootstrap's variables must come from the same files.
    """
    check_current(stack, root)
    if not limit:
        return list(stack.site.nodes)
    chosen = set(hosts_matching(stack, root, limit, inventory_checked=True))
    return [n for n in stack.site.nodes if n.hostname in chosen]


def _parse_properties(path: Path) -> dict[str, str]:
    """The properties the node's checks recorded (junit <property name= value=>), values cut to 200 characters."""
    root = ET.parse(path).getroot()  # noqa: S314
    return {
        str(prop.get("name", ""))[:64]: str(prop.get("value", ""))[:200]
        for case in root.iter("testcase")
        for prop in case.iter("property")
    }


def _parse_junit(path: Path) -> dict[str, CheckResult]:
    checks: dict[str, CheckResult] = {}
    root = ET.parse(path).getroot()  # noqa: S314
    for case in root.iter("testcase"):
        name = case.get("name", "").split("[")[0].removeprefix("test_")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            text = failure.get("message") or (failure.text or "")
            checks[name] = CheckResult(FAIL, _first_line(text))
        elif skipped is not None:
            checks[name] = CheckResult(SKIP, (skipped.get("message") or "").removeprefix("Skipped: "))
        else:
            checks[name] = CheckResult(PASS)
    return checks


def _first_line(text: str) -> str:
    text = text.removeprefix("AssertionError: ").removeprefix("Failed: ")
    return text.strip().splitlines()[0] if text.strip() else ""


def verify_node(stack: Stack, root: Path, node: NodeView, ssh_config: Path | None, workdir: Path) -> NodeResult:
    junit = workdir / f"{node.hostname}.xml"
    expected = workdir / f"{node.hostname}.json"
    expected.write_text(expectations(root, stack.site, node).to_json())
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(SUITE / "pytest.ini"),
        "--rootdir",
        str(SUITE),
        str(SUITE / "test_node.py"),
        f"--hosts=ssh://{node.management_ip}",
        f"--junitxml={junit}",
        f"--expectations={expected}",
        "-o",
        "junit_family=xunit1",
    ]
    if ssh_config:
        cmd.append(f"--ssh-config={ssh_config}")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=3600)
    result = NodeResult(node, seconds=time.monotonic() - start)
    if junit.is_file():
        result.checks = _parse_junit(junit)
        result.properties = _parse_properties(junit)
    if proc.returncode not in (0, 1) or not result.checks:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        result.error = f"suite did not run (exit {proc.returncode}): {' | '.join(tail)}"
    elif all(c.status == FAIL for c in result.checks.values()):
        # Every check failing with the same message is a connection problem, not a node problem.
        messages = {c.message for c in result.checks.values()}
        if len(messages) == 1:
            result.error = f"unreachable: {messages.pop()}"
    return result


def run(
    stack: Stack,
    root: Path,
    limit: str | None = None,
    *,
    parallel: int = 16,
    say=print,
    ssh_config: Path | None = None,
) -> list[NodeResult]:
    nodes = select(stack, root, limit)
    say(
        f"verify {stack.name}: {len(nodes)} node(s), {parallel} at a time"
        + (f", SSH settings {ssh_config}" if ssh_config else "")
    )
    with tempfile.TemporaryDirectory(prefix="aifactory-verify-") as tmp, ThreadPoolExecutor(parallel) as pool:
        futures = [pool.submit(verify_node, stack, root, n, ssh_config, Path(tmp)) for n in nodes]
        results = []
        for fut in futures:
            r = fut.result()
            counts = {s: sum(1 for c in r.checks.values() if c.status == s) for s in (PASS, FAIL, SKIP)}
            say(
                f"  {r.node.hostname}: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped"
                f" in {r.seconds:.1f} s" + (f" ({r.error})" if r.error else "")
            )
            results.append(r)
    across_racks(results)
    return results


CLIQUE_CHECK = "nvlink_clique_matches_rack"


def across_racks(results: list[NodeResult]) -> None:
    """The checks only a rack can answer: its trays on one NVLink clique, no two racks on the same.

    A tray's clique is what its own check recorded (nvidia-smi's fabric cluster UUID and clique ID,
    the value GPU feature discovery puts in nvidia.com/gpu.clique); a tray that recorded none (no
    GPU) is skipped with the reason.
    """
    from .imex import clique_problems

    by_rack: dict[str, dict[str, str]] = {}
    for r in results:
        if r.node.nvlink_domain and "clique" in r.properties:
            by_rack.setdefault(r.node.nvlink_domain, {})[r.node.hostname] = r.properties["clique"]
    problems = clique_problems(by_rack)
    for r in results:
        if not r.node.nvlink_domain:
            continue
        if r.node.hostname in problems:
            r.checks[CLIQUE_CHECK] = CheckResult(FAIL, problems[r.node.hostname])
        elif "clique" in r.properties:
            peers = len(by_rack[r.node.nvlink_domain])
            r.checks[CLIQUE_CHECK] = CheckResult(PASS, f"{peers} tray(s) of {r.node.nvlink_domain} on one clique")
        else:
            r.checks[CLIQUE_CHECK] = CheckResult(SKIP, "no NVLink clique read on this tray (no GPU answered)")


def table(results: list[NodeResult]) -> str:
    checks = sorted({c for r in results for c in r.checks})
    names = [r.node.hostname for r in results]
    width = max([5, *(len(c) for c in checks)])
    cols = [max(4, len(n)) for n in names]
    lines = ["CHECK".ljust(width) + "  " + "  ".join(n.ljust(w) for n, w in zip(names, cols, strict=True))]
    for check in checks:
        cells = [r.checks.get(check, CheckResult("-")).status.ljust(w) for r, w in zip(results, cols, strict=True)]
        lines.append(check.ljust(width) + "  " + "  ".join(cells))
    failures = [
        (r.node.hostname, c, v.message) for r in results for c, v in sorted(r.checks.items()) if v.status == FAIL
    ]
    failures += [(r.node.hostname, "suite", r.error) for r in results if r.error]
    if failures:
        lines += ["", "failures:"] + [f"  {h}: {c}: {m}" for h, c, m in failures]
    skips: dict[tuple[str, str], list[str]] = {}
    for r in results:
        for c, v in r.checks.items():
            if v.status == SKIP:
                skips.setdefault((c, v.message), []).append(r.node.hostname)
    if skips:
        lines += ["", "skipped (with the reason):"]
        for (c, msg), hosts in sorted(skips.items()):
            lines.append(f"  {c} on {', '.join(hosts)}: {msg}")
    bad = [r.node.hostname for r in results if r.failed]
    lines += ["", f"FAILED: {', '.join(bad)}" if bad else f"all {len(results)} node(s) verified"]
    return "\n".join(lines)


def write_junit(results: list[NodeResult], site: str, path: Path) -> None:
    suites = ET.Element("testsuites", name=f"aifactory verify {site}")
    for r in results:
        fails = sum(1 for c in r.checks.values() if c.status == FAIL) + (1 if r.error else 0)
        skips = sum(1 for c in r.checks.values() if c.status == SKIP)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=r.node.hostname,
            tests=str(len(r.checks) + bool(r.error)),
            failures=str(fails),
            skipped=str(skips),
            time=f"{r.seconds:.2f}",
        )
        for name, c in sorted(r.checks.items()):
            case = ET.SubElement(suite, "testcase", classname=f"{site}.{r.node.hostname}", name=name)
            if c.status == FAIL:
                ET.SubElement(case, "failure", message=c.message)
            elif c.status == SKIP:
                ET.SubElement(case, "skipped", message=c.message)
        if r.error:
            case = ET.SubElement(suite, "testcase", classname=f"{site}.{r.node.hostname}", name="suite")
            ET.SubElement(case, "error", message=r.error)
    import io

    text = io.StringIO()
    ET.ElementTree(suites).write(text, encoding="unicode", xml_declaration=True)
    write_out(path, text.getvalue(), "--junit")


def write_json(results: list[NodeResult], site: str, path: Path) -> None:
    doc = {
        "site": site,
        "nodes": {
            r.node.hostname: {
                "managementIp": str(r.node.management_ip),
                "error": r.error,
                "checks": {k: {"status": v.status, "message": v.message} for k, v in sorted(r.checks.items())},
            }
            for r in results
        },
    }
    write_out(path, json.dumps(doc, indent=2, sort_keys=True) + "\n", "--json")


def write_out(path: Path, text: str, option: str) -> None:
    """A report where the person asked for it: its folder made if need be, a symlink at the path replaced, never
    written through (fsutil.write_atomic)."""
    from ..errors import ConfigError, Problem
    from ..fsutil import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError([Problem(option, "", f"cannot create {path.parent}: {exc.strerror}")]) from None
    write_atomic(path, text)
