"""The audit report: self-contained, complete, reproducible to the byte, and honest about failures."""

from __future__ import annotations

import re
import shutil

from .test_diff import _git


def _audit(cli, root, out, *extra, code=0):
    got, stdout, err = cli("audit", "eg", "--out", str(out), "--as-of", "2026-11-23", *extra, root=root)
    assert got == code, err
    return (out / "audit-eg.html").read_text(), (out / "audit-eg.md").read_text()


def test_report_is_complete_and_reproducible(workdir, cli, tmp_path, root):
    shutil.copytree(root / "templates", workdir / "templates")
    _git(workdir, "init", "-q")
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-qm", "approved")
    _git(workdir, "tag", "approved")
    stack = workdir / "stacks" / "Pulumi.eg.yaml"
    stack.write_text(stack.read_text().replace("driver: 580.95.05", "driver: 580.105.08"))
    _git(workdir, "commit", "-qam", "driver update")

    html, md = _audit(cli, workdir, tmp_path / "a", "--against", "approved")
    html2, md2 = _audit(cli, workdir, tmp_path / "b", "--against", "approved")
    assert (html, md) == (html2, md2)

    assert "<link" not in html and "<script" not in html and "http-equiv" not in html  # self-contained
    for text in (html, md):
        assert "Personal Data Protection Law No. 151 of 2020" in text
        assert "dgx-b200" in text and "96" in text  # 12 nodes x 8 GPUs
        assert "580.105.08" in text
        assert "residency.in-country" in text and "compat.operator-driver" in text
        assert "gpu_stack.driver" in text and "580.95.05" in text  # the diff against the tag
        assert "kubernetes:metal3.io/v1alpha1:BareMetalHost" in text
        assert "PASS" in text
    digest = re.search(r"input hash `([0-9a-f]{64})`", md).group(1)
    assert f"<code>{digest}</code>" in html
    assert "aifactory audit eg --out DIR --as-of 2026-11-23 --against approved" in md
    # Every check that ran is listed with its result, the ones that speak only on failure too.
    from aifactory.policies import CHECK_IDS

    for check in CHECK_IDS:
        assert f"`{check}`" in md, check
    # Sources are links an auditor can follow.
    from aifactory import catalog

    url = catalog.CUDA_RELEASE_NOTES.url
    assert f'<a href="{url}">' in html and f"](<{url}>)" in md

    # Any input change moves the hash.
    stack.write_text(stack.read_text().replace("gpu_quota: 48", "gpu_quota: 40"))
    _, md3 = _audit(cli, workdir, tmp_path / "c", "--against", "approved")
    assert re.search(r"input hash `([0-9a-f]{64})`", md3).group(1) != digest


def test_report_shows_a_failing_policy(workdir, cli, tmp_path, root):
    shutil.copytree(root / "templates", workdir / "templates")
    stack = workdir / "stacks" / "Pulumi.eg.yaml"
    stack.write_text(stack.read_text().replace("country: EG}", "country: SA}", 1))
    # The gate refuses it and writes nothing ...
    code, out, err = cli("audit", "eg", "--out", str(tmp_path / "refused"), "--as-of", "2026-11-23", root=workdir)
    assert code == 2 and out == ""
    assert "[residency.in-country]" in err
    assert not (tmp_path / "refused").exists()
    # ... unless the auditor asks for the record of the failing site (the exit stays 2).
    html, md = _audit(cli, workdir, tmp_path / "x", "--even-if-failing", code=2)
    assert "**FAIL**" in md
    assert '<tr class="error"><td>error</td><td><code>residency.in-country</code></td>' in html
    assert "No revision was given" in md


def test_audit_rejects_a_bad_date(cli, tmp_path):
    code, _, err = cli("audit", "eg", "--out", str(tmp_path), "--as-of", "yesterday")
    assert code == 2
    assert "error: --as-of: 'yesterday' is not a date (YYYY-MM-DD)" in err


def test_markdown_escapes_what_a_stack_may_hold(workdir, cli, tmp_path, root):
    shutil.copytree(root / "templates", workdir / "templates")
    stack = workdir / "stacks" / "Pulumi.eg.yaml"
    text = stack.read_text()
    name = next(line for line in text.splitlines() if line.startswith("    name: "))
    stack.write_text(text.replace(name, '    name: "<script>alert(1)</script> | forged | cell"', 1))
    html, md = _audit(cli, workdir, tmp_path / "m")
    assert "<script>" not in md and "<script>" not in html
    assert "&lt;script&gt;" in md
    assert "\\| forged \\| cell" in md
