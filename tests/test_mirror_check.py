"""`mirror check`'s questions, asked of mirrors on loopback: each kind of answer, and each kind of wrong one.

The lab's real mirrors answer in tests/test_testhosts.py (the package proxy, the artifact mirror).
Here a plain HTTP server on 127.0.0.1 serves what a mirror would: files, an apt index, a chart
index, and, standing in for an OCI registry (no registry runs on these machines), the manifest
endpoint's Docker-Content-Digest header; that stand-in tests the comparison, not a registry. The
OpenPGP fingerprint is checked against gpg's own.
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from aifactory.mirror import check as mc
from aifactory.mirror.manifest import Item


class Handler(http.server.SimpleHTTPRequestHandler):
    digests: dict[str, str] = {}

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        if self.path.startswith("/v2/"):
            digest = self.digests.get(self.path)
            self.send_response(200 if digest else 404)
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            return
        super().do_HEAD()


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args, **kw):
        return Handler(*args, directory=str(root), **kw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def ask(item: Item):
    m = mc.Mirrors(5.0, {}, {})
    try:
        return mc.CHECKS[item.kind](item, m)
    except mc.NotThere as exc:
        return mc.Finding(item, mc.MISSING, str(exc))


def test_a_file_is_hashed_as_served(mirror):
    root, host = mirror
    (root / "nccl").mkdir()
    (root / "nccl" / "x.whl").write_bytes(b"nvidia")
    want = hashlib.sha256(b"nvidia").hexdigest()
    item = Item("file", "artifacts", "x", "1", "x86_64", f"http://{host}/nccl/x.whl", f"sha256:{want}", "s")
    assert ask(item).status == mc.OK
    (root / "nccl" / "x.whl").write_bytes(b"planted")
    finding = ask(item)
    assert finding.status == mc.DIFFERENT and hashlib.sha256(b"planted").hexdigest() in finding.detail
    assert ask(replace(item, location=f"http://{host}/nccl/none.whl")).status == mc.MISSING


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
def test_a_keys_fingerprint_is_gpgs(mirror, tmp_path):
    root, host = mirror
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet"]
    subprocess.run(
        [*gpg, "--passphrase", "", "--quick-gen-key", "mirror test <t@t>", "ed25519", "sign", "1d"], check=True
    )
    armored = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout
    binary = subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout
    colons = subprocess.run([*gpg, "--with-colons", "--fingerprint"], check=True, capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    assert mc.openpgp_fingerprint(armored) == mc.openpgp_fingerprint(binary) == fingerprint
    (root / "k.pub").write_bytes(armored)
    item = Item("key", "cuda", "k.pub", "", "", f"http://{host}/k.pub", fingerprint, "s")
    assert ask(item).status == mc.OK
    assert ask(replace(item, digest="EB693B3035CD5710E231E123A4B469963BF863CC")).status == mc.DIFFERENT
    (root / "k.pub").write_text("<html>not a key</html>")
    assert ask(item).status == mc.DIFFERENT


def test_a_charts_digest_is_read_from_the_repository_index(mirror):
    root, host = mirror
    (root / "index.yaml").write_text(
        "apiVersion: v1\nentries:\n  gpu-operator:\n  - name: gpu-operator\n    version: v25.10.1\n"
        "    digest: " + "a" * 64 + "\n    urls: [gpu-operator-v25.10.1.tgz]\n"
    )
    item = Item(
        "chart", "charts", "gpu-operator", "v25.10.1", "", f"http://{host}/index.yaml", f"sha256:{'a' * 64}", "s"
    )
    assert ask(item).status == mc.OK
    assert ask(replace(item, digest=f"sha256:{'b' * 64}")).status == mc.DIFFERENT
    assert ask(replace(item, digest=None, note="no upstream digest")).status == mc.UNPINNED
    assert ask(replace(item, version="v25.3.4")).status == mc.MISSING


def test_an_images_digest_is_the_registrys_manifest_digest(mirror):
    _root, host = mirror
    digest = "sha256:" + "c" * 64
    Handler.digests = {"/v2/nvidia/k8s/container-toolkit/manifests/v1.18.1": digest}
    item = Item(
        "image", "containers", "nvcr.io/nvidia/k8s/container-toolkit:v1.18.1", "v1.18.1", "",
        f"{host}/nvidia/k8s/container-toolkit:v1.18.1@{digest}", digest, "s",
    )  # fmt: skip
    assert ask(item).status == mc.OK
    assert ask(replace(item, digest="sha256:" + "d" * 64)).status == mc.DIFFERENT
    assert ask(replace(item, location=f"{host}/nvidia/k8s/container-toolkit:v9@{digest}")).status == mc.MISSING


def test_an_apt_package_is_found_at_the_version_its_pin_picks(mirror):
    root, host = mirror
    index = root / "debian" / "dists" / "bookworm" / "non-free" / "binary-amd64"
    index.mkdir(parents=True)
    pool = root / "debian" / "pool" / "non-free" / "n"
    pool.mkdir(parents=True)
    (pool / "nvidia-smi_535.261.03-1_amd64.deb").write_bytes(b"deb")
    (index / "Packages").write_text(
        "Package: nvidia-smi\nVersion: 535.247.01-1\nFilename: pool/non-free/n/old.deb\nSHA256: " + "0" * 64 + "\n\n"
        "Package: nvidia-smi\nVersion: 535.261.03-1\nFilename: pool/non-free/n/nvidia-smi_535.261.03-1_amd64.deb\n"
        "SHA256: " + "1" * 64 + "\n"
    )
    item = Item("apt", "debian", "nvidia-smi", "535.261.03-*", "amd64", f"http://{host}/debian", None, "s")
    finding = ask(item)
    assert finding.status == mc.OK and finding.detail.startswith("535.261.03-1 sha256:" + "1" * 64)
    assert ask(replace(item, version="580.95.05-*")).status == mc.MISSING
    (pool / "nvidia-smi_535.261.03-1_amd64.deb").unlink()
    assert ask(item).status == mc.MISSING  # listed in the index, but the mirror lacks the .deb


def test_a_mirror_that_does_not_answer_is_said_once(monkeypatch):
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    items = tuple(
        Item("file", "artifacts", f"f{i}", "1", "", f"http://127.0.0.1:{port}/f{i}", "sha256:" + "0" * 64, "s")
        for i in range(3)
    )
    monkeypatch.setattr(mc, "manifest", lambda root, site: type("M", (), {"items": items})())
    findings = mc.check(Path("."), None, None, timeout=2.0)
    assert [f.status for f in findings] == [mc.UNREACHABLE] * 3
    assert len({f.detail for f in findings}) == 1 and "Connection refused" in findings[0].detail
