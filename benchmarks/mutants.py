"""Mutation test: deliberate one-line breaks, each of which some fast test must catch.

    .venv/bin/python benchmarks/mutants.py            # every break; prints break -> catching test
    .venv/bin/python benchmarks/mutants.py -k grammar # only the breaks whose label contains "grammar"

Each break replaces one line of the source (the line must occur exactly once) in a scratch copy of
the checkout (git's tracked files; the checkout itself is never touched), then runs the fast tests
named for it (`-m "not testhosts"`, stopping at the first failure) with the copy's `src` first on
the import path. A break that no test catches is a SURVIVOR: the exit status is 1 while any survive.
A separate set of breaks, not in the repository, is tried by the project's reviewers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Break:
    label: str
    file: str
    line: str  # the whole line as it stands, without its end-of-line
    into: str  # what it becomes
    tests: tuple[str, ...]


P = "src/aifactory/policies"
G = "src/aifactory/grammar.py"
M = "src/aifactory/model.py"
POLICY = ("tests/test_policy.py",)
GRAMMAR = ("tests/test_grammar.py", "tests/test_bad_input.py")
MODEL = ("tests/test_model_rules.py", "tests/test_bad_input.py")

BREAKS: tuple[Break, ...] = (
    # -- one per policy family, and the registry's rules ------------------------------------------
    Break(
        "policy residency: every host proven in-country",
        f"{P}/residency.py",
        "    return _in_ranges(host, ic.networks) or _under(host, ic.dns_suffixes)",
        "    return True",
        POLICY,
    ),
    Break(
        "policy residency.state-backend: s3 without endpoint= is local",
        f"{P}/residency.py",
        '            return None, "an s3:// URL without endpoint= stores state in AWS S3"',
        '            return "", ""',
        POLICY,
    ),
    Break(
        "policy residency-sites: two countries' claims never compared",
        f"{P}/residency.py",
        "        if name == subject or other.jurisdiction.data_residency == me.jurisdiction.data_residency:",
        "        if True:",
        POLICY,
    ),
    Break(
        "policy compat.nccl-cuda: CUDA majors never compared",
        f"{P}/compat.py",
        '    if int(g.nccl_cuda.split(".")[0]) != g.cuda_major:',
        "    if False:",
        POLICY,
    ),
    Break(
        "policy compat.sku-driver: SKU minimum driver ignored",
        f"{P}/compat.py",
        "        if not g.driver_at_least(sku.min_driver):",
        "        if False:",
        POLICY,
    ),
    Break(
        "policy net.overlap: overlaps ignored",
        f"{P}/net.py",
        "            if a.overlaps(b):",
        "            if False:",
        POLICY,
    ),
    Break(
        "policy net-sites: cross-site overlaps ignored",
        f"{P}/net.py",
        "                    if na.overlaps(nb):",
        "                    if False:",
        POLICY,
    ),
    Break(
        "policy secrets.lab-passphrase: lab key never tried",
        f"{P}/secrets.py",
        "    elif verifies(lab_passphrase, stack.encryptionsalt):",
        "    elif False:",
        POLICY,
    ),
    Break(
        "policy tenants.quota: double the GPUs allowed",
        f"{P}/tenants.py",
        "    if total > site.gpu_total:",
        "    if total > 2 * site.gpu_total:",
        POLICY,
    ),
    Break(
        "policy supply.digests: NCCL without digest passes",
        f"{P}/supply.py",
        "        if wheel is None:",
        "        if False:",
        POLICY,
    ),
    Break(
        "policy supply.cuda-key: any non-empty key passes",
        f"{P}/supply.py",
        "    if declared != supply.CUDA_REPO_KEY_FINGERPRINT:",
        "    if not declared:",
        POLICY,
    ),
    Break(
        "policy policies.skip: residency skippable",
        f"{P}/registry.py",
        "        barred = sorted(set(hits) & _UNSKIPPABLE)",
        "        barred = []",
        POLICY,
    ),
    Break(
        "registry: undeclared ids pass",
        f"{P}/base.py",
        "            if r.id not in self.checks:",
        "            if False:",
        POLICY,
    ),
    Break("registry: scope ignored", f"{P}/base.py", '        if self.scope == "site":', "        if False:", POLICY),
    # -- one per grammar ------------------------------------------------------------------------------
    Break("grammar ifname", G, '_IFNAME = _full(r"[A-Za-z0-9_.:-]{1,15}")', '_IFNAME = _full(r"[^/]{1,15}")', GRAMMAR),
    Break("grammar rdma device", G, '_RDMA = _full(r"[a-z][a-z0-9_]{0,62}")', '_RDMA = _full(r".{1,63}")', GRAMMAR),
    Break(
        "grammar DNS label",
        G,
        '_LABEL = _full(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")',
        '_LABEL = _full(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")',
        GRAMMAR,
    ),
    Break("grammar MAC", G, '_MAC = _full(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}")', '_MAC = _full(r".+")', GRAMMAR),
    Break(
        "grammar fingerprint",
        G,
        '_HEX40 = _full(r"[0-9A-F]{40}")',
        '_HEX40 = _full(r"[0-9A-Fa-f\\n]{40,41}")',
        GRAMMAR,
    ),
    Break(
        "grammar URL characters",
        G,
        '_URL_CHARS = _full(r"(?:[A-Za-z0-9._~:/?#\\[\\]@!$&\'()*+,;=-]|%[0-9A-Fa-f]{2})+")',
        '_URL_CHARS = _full(r"[^\\n]+")',
        GRAMMAR,
    ),
    Break(
        "grammar registry port",
        G,
        "    ok_port = not colon or (bool(_PORT.fullmatch(port)) and 0 < int(port) < 65536)",
        "    ok_port = not colon or bool(_PORT.fullmatch(port))",
        GRAMMAR,
    ),
    Break(
        "grammar OCI path",
        G,
        '_OCI_PATH = _full(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")',
        '_OCI_PATH = _full(r".+")',
        GRAMMAR,
    ),
    Break(
        "grammar qualified name",
        G,
        '_QUALIFIED = _full(r"(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")',  # noqa: E501
        '_QUALIFIED = _full(r".+")',
        GRAMMAR,
    ),
    Break(
        "grammar kube context",
        G,
        '_CONTEXT = _full(r"[A-Za-z0-9][A-Za-z0-9._@:/-]{0,252}")',
        '_CONTEXT = _full(r".+")',
        GRAMMAR,
    ),
    Break(
        "grammar S3 region",
        G,
        '_S3_REGION = _full(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")',
        '_S3_REGION = _full(r".+")',
        GRAMMAR,
    ),
    Break(
        "grammar bucket name",
        G,
        '_BUCKET = _full(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")',
        '_BUCKET = _full(r"[A-Za-z0-9_.-]{1,255}")',
        GRAMMAR,
    ),
    Break("grammar S3 user", G, '_S3_USER = _full(r"[a-z0-9][a-z0-9_-]{0,63}")', '_S3_USER = _full(r".+")', GRAMMAR),
    Break(
        "grammar parameter value",
        G,
        '_PARAM_VALUE = _full(r"[\\x21-\\x7e](?:[\\x20-\\x7e]{0,254}[\\x21-\\x7e])?")',
        '_PARAM_VALUE = _full(r"(?s:.+)")',
        GRAMMAR,
    ),
    Break(
        "grammar free text: line breaks allowed",
        G,
        '    bad = [c for c in value if unicodedata.category(c)[0] in {"C", "Z"} and c != " "]',
        "    bad = []",
        GRAMMAR,
    ),
    Break(
        "grammar dotted version",
        G,
        '    pattern = _full(r"[0-9]{1,6}" + r"\\.[0-9]{1,6}" * (parts - 1))',
        '    pattern = _full(r"[0-9.]+")',
        GRAMMAR,
    ),
    Break(
        "grammar URL credentials",
        G,
        '    if "@" in parts.netloc:',
        "    if False:",
        GRAMMAR,
    ),
    Break(
        "grammar hostname scheme fields",
        G,
        "        if name not in SCHEME_FIELDS or conversion is not None:",
        "        if False:",
        GRAMMAR,
    ),
    Break(
        "grammar host name: digits-only names",
        G,
        "    ok = ok and not _IPV4ISH.fullmatch(value)",
        "    ok = ok",
        GRAMMAR,
    ),
    # -- the drift check ----------------------------------------------------------------------------
    Break(
        "inventory drift: a changed file is not drift",
        "src/aifactory/inventory.py",
        "        if text != r.text:",
        "        if False:",
        ("tests/test_inventory.py",),
    ),
    Break(
        "inventory drift: a file nothing renders is not drift",
        "src/aifactory/inventory.py",
        "        if why and found.path not in paths:",
        "        if False:",
        ("tests/test_inventory.py",),
    ),
    # -- the model's validators -----------------------------------------------------------------------
    Break("model: a country code", M, "    if value not in COUNTRY_CODES:", "    if False:", MODEL),
    Break("model: a SKU", M, "    if value not in SKUS:", "    if False:", MODEL),
    Break("model: catalogued releases", M, "        if value not in known:", "        if False:", MODEL),
    Break(
        "model: object lock needs versioning",
        M,
        "        if self.object_lock is not None and not self.versioning:",
        "        if False:",
        MODEL,
    ),
    Break(
        "model: evidence bucket COMPLIANCE",
        M,
        '        if self.role == "evidence" and (self.object_lock is None or self.object_lock.mode != "COMPLIANCE"):',
        '        if self.role == "evidence" and self.object_lock is None:',
        MODEL,
    ),
    Break(
        "model: one evidence bucket",
        M,
        "        if len(evidence) > 1:",
        "        if len(evidence) > 2:",
        MODEL,
    ),
    Break("model: unique names", M, "            if dupes:", "            if False:", MODEL),
    Break(
        "model: one default storage class",
        M,
        "        if len(defaults) > 1:",
        "        if len(defaults) > 2:",
        MODEL,
    ),
    Break(
        "model: hostnames render to DNS labels",
        M,
        "                if len(name) > 63 or not grammar.dns_label_ok(name):",
        "                if len(name) > 255:",
        MODEL,
    ),
    Break(
        "model: a field path names real fields",
        M,
        "        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:",  # noqa: E501
        "        if not (isinstance(current, type) and issubclass(current, BaseModel)):",
        ("tests/test_model_paths.py", *POLICY),
    ),
    # -- the rollout's failure rules ----------------------------------------------------------------
    Break(
        "rollout: a batch passes with any number of failures",
        "src/aifactory/rollout/engine.py",
        "    batch.passed = len(batch.failures) <= rollout.options.max_failures",
        "    batch.passed = True",
        ("tests/test_rollout.py",),
    ),
    Break(
        "rollout: one failure more than allowed passes",
        "src/aifactory/rollout/engine.py",
        "    batch.passed = len(batch.failures) <= rollout.options.max_failures",
        "    batch.passed = len(batch.failures) <= rollout.options.max_failures + 1",
        ("tests/test_rollout.py",),
    ),
    # -- named in issue 24 ------------------------------------------------------------------------------
    Break(
        "probe: NCCL version decode (2.x codes)",
        "src/aifactory/verify/probe.py",
        '        return f"{code // 10000}.{code % 10000 // 100}.{code % 100}"',
        '        return f"{code // 10000}.{code % 1000 // 100}.{code % 100}"',
        ("tests/test_parsers.py", "tests/test_rollout.py", "tests/test_fidelity.py"),
    ),
    Break(
        "supply: an NCCL version takes another version's digest",
        "src/aifactory/catalog/supply.py",
        "    return next((w for w in NCCL_REDISTRIBUTABLES if (w.project, w.version, w.arch) == (project, version, arch)), None)",  # noqa: E501
        "    return next((w for w in NCCL_REDISTRIBUTABLES if (w.project, w.arch) == (project, arch)), None)",
        ("tests/test_policy.py", "tests/test_supply.py"),
    ),
    Break(
        "mirror check: a file with other bytes passes",
        "src/aifactory/mirror/check.py",
        "    if got != want:",
        "    if False:",
        ("tests/test_mirror_check.py",),
    ),
    Break(
        "mirror check: an image of another digest passes",
        "src/aifactory/mirror/check.py",
        '            item, DIFFERENT, f"the registry serves {shown(served, 80)} for {tag}, the catalog\'s is {item.digest}"',  # noqa: E501
        '            item, OK, f"the registry serves {shown(served, 80)} for {tag}, the catalog\'s is {item.digest}"',
        ("tests/test_mirror_check.py",),
    ),
    Break(
        "supply: images rendered without their digest",
        "src/aifactory/catalog/supply.py",
        '    return f"{image.tag}@sha256:{digest.sha256}" if isinstance(digest, Digest) else image.tag',
        "    return image.tag",
        ("tests/test_plan.py", "tests/test_supply.py"),
    ),
    Break(
        "node suite: Fabric Manager accepts N/A",
        "src/aifactory/verify/suite/test_node.py",
        "        if (g.fabric_state, g.fabric_status) != FABRIC_DONE",
        '        if g.fabric_state not in (None, "Completed")',
        ("tests/test_node_checks.py",),
    ),
    Break(
        "node suite: NVLink looks only at listed GPUs",
        "src/aifactory/verify/suite/test_node.py",
        "    missing = [g for g in range(expect.sku.gpu_count) if g not in status.links]",
        "    missing = []",
        ("tests/test_node_checks.py",),
    ),
)


def copy_checkout(into: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src, dst = ROOT / os.fsdecode(name), into / os.fsdecode(name)
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def run(b: Break, scratch: Path) -> tuple[str, float]:
    """The first failing test under the break, or "" if none failed; and the seconds it took."""
    path = scratch / b.file
    original = path.read_text()
    if original.count(b.line + "\n") != 1:
        raise SystemExit(f"{b.label}: the line is not in {b.file} exactly once:\n  {b.line}")
    path.write_text(original.replace(b.line + "\n", b.into + "\n"))
    env = {**os.environ, "PYTHONPATH": str(scratch / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                "-m",
                "not testhosts",
                "-rf",
                *b.tests,
            ],
            check=False,
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        path.write_text(original)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
    if proc.returncode not in (0, 1) and not failed:
        return f"(pytest exit {proc.returncode}: {proc.stdout.strip().splitlines()[-1:]})", time.monotonic() - t0
    return (failed[0] if failed else ""), time.monotonic() - t0


def baseline(scratch: Path, tests: tuple[str, ...]) -> None:
    """The tests named for a break must pass on the unbroken copy, or a 'catch' would prove nothing."""
    env = {**os.environ, "PYTHONPATH": str(scratch / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not testhosts", *tests],
        check=False,
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the unbroken copy fails {' '.join(tests)}:\n{proc.stdout[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only breaks whose label contains this")
    args = ap.parse_args()
    chosen = [b for b in BREAKS if args.k in b.label]
    survivors = 0
    with tempfile.TemporaryDirectory(prefix="aifactory-mutants-") as tmp:
        scratch = Path(tmp)
        copy_checkout(scratch)
        for tests in dict.fromkeys(b.tests for b in chosen):
            baseline(scratch, tests)
        print("| break | file | caught by | s |\n|---|---|---|---|")
        for b in chosen:
            caught, seconds = run(b, scratch)
            survivors += not caught
            print(
                f"| {b.label} | {b.file.removeprefix('src/aifactory/')} | {caught or 'SURVIVED'} | {seconds:.0f} |",
                flush=True,
            )
    print(f"\n{len(chosen) - survivors} of {len(chosen)} breaks caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
