"""Ask a site's mirrors whether they serve each item of its manifest, with the right digest.

- files (the artifact mirror): GET, hashed as it streams, against the catalog's sha256;
- keys (the CUDA mirror): GET, the OpenPGP v4 fingerprint computed from the key's first packet;
- images (the registry): the manifest's digest from the OCI distribution API (HEAD
  /v2/NAME/manifests/TAG, Docker-Content-Digest), against the catalog's;
- charts (the chart repository): index.yaml, the version's `digest`;
- apt packages: the mirror's own index (Packages for the suite, component and architecture), the
  version the role's pin picks, and the .deb at its Filename (HEAD).

Whatever a mirror answers is untrusted: bodies are size-capped, YAML is read safely, and nothing a
server says is printed unescaped. The digests compared against are the catalog's, never a mirror's.
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import hashlib
import http.client
import lzma
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import yaml

from ..grammar import shown
from ..model import Site
from .manifest import DEBIAN_SUITE, UBUNTU_CUDA_RELEASES, Item, manifest

OK, MISSING, DIFFERENT, UNREACHABLE, UNPINNED = "ok", "MISSING", "DIFFERENT", "UNREACHABLE", "unpinned"
FAILING = {MISSING, DIFFERENT, UNREACHABLE}
MAX_INDEX = 512 * 2**20  # an uncompressed Packages or index.yaml larger than this is refused
DEBIAN_COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")
UBUNTU_SUITES = ("jammy", "noble")  # 22.04 and 24.04, the releases the roles support
UBUNTU_COMPONENTS = ("main", "universe", "restricted", "multiverse")
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


@dataclass(frozen=True)
class Finding:
    item: Item
    status: str
    detail: str

    def line(self) -> str:
        i = self.item
        what = f"{i.kind} {i.mirror} {i.name} {i.version or '-'} {i.arch or '-'}"
        return f"{self.status:11s} {what}: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status, "detail": self.detail, "item": asdict(self.item)}


class Unreachable(Exception):
    """The mirror did not answer (refused, timed out, TLS failed): said once per mirror, not per item."""


class NotThere(Exception):
    """The mirror answered that it does not have it (404, 410)."""


def _open(url: str, timeout: float, method: str = "GET", headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310 - http(s) from the model
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - the site's declared mirror
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise NotThere(f"HTTP {exc.code}") from None
        raise Unreachable(f"HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"{url}: {shown(str(reason), 120)}") from None


def fetch(url: str, timeout: float, limit: int = MAX_INDEX) -> bytes:
    with _open(url, timeout) as response:
        body = response.read(limit + 1)
    if len(body) > limit:
        raise Unreachable(f"{url}: more than {limit} bytes")
    return body


def sha256_of(url: str, timeout: float) -> str:
    digest = hashlib.sha256()
    with _open(url, timeout) as response:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- keys ----------------------------------------------------------------------------------------


def openpgp_fingerprint(data: bytes) -> str:
    """The v4 fingerprint of the first public key in an OpenPGP key file (armoured or binary), RFC 4880 12.2."""
    text = data.decode("ascii", "replace")
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" in text:
        body = text.split("-----BEGIN PGP PUBLIC KEY BLOCK-----", 1)[1].split("-----END", 1)[0]
        lines = [ln.strip() for ln in body.strip().splitlines()]
        b64 = "".join(ln for ln in lines[lines.index("") + 1 if "" in lines else 0 :] if ln and not ln.startswith("="))
        data = base64.b64decode(b64)
    if not data or not data[0] & 0x80:
        raise ValueError("not an OpenPGP packet")
    head = data[0]
    if head & 0x40:  # new format
        tag, length, offset = head & 0x3F, data[1], 2
        if length >= 192 and length < 224:
            length, offset = ((length - 192) << 8) + data[2] + 192, 3
        elif length == 255:
            length, offset = int.from_bytes(data[2:6], "big"), 6
    else:  # old format
        tag, kind = (head >> 2) & 0x0F, head & 0x03
        size = {0: 1, 1: 2, 2: 4}.get(kind)
        if size is None:
            raise ValueError("indeterminate packet length")
        length, offset = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    if tag != 6:
        raise ValueError(f"first packet is tag {tag}, not a public key")
    body = data[offset : offset + length]
    if not body or body[0] != 4:
        raise ValueError("not a version 4 key")
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()  # noqa: S324 - RFC 4880


# -- apt indexes ---------------------------------------------------------------------------------


def packages_index(base: str, path: str, timeout: float) -> dict[str, list[dict[str, str]]]:
    """Package name -> its stanzas, from the first of Packages.xz, Packages.gz, Packages the mirror serves."""
    for suffix, unpack in ((".xz", lzma.decompress), (".gz", gzip.decompress), ("", lambda b: b)):
        try:
            raw = fetch(f"{base}/{path}/Packages{suffix}", timeout)
        except NotThere:
            continue
        text = unpack(raw)[: MAX_INDEX + 1]
        if len(text) > MAX_INDEX:
            raise Unreachable(f"{base}/{path}/Packages: larger than {MAX_INDEX} bytes")
        out: dict[str, list[dict[str, str]]] = {}
        for stanza in text.decode("utf-8", "replace").split("\n\n"):
            fields = dict(
                (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in stanza.splitlines() if ln[:1] != " ")
            )
            if "Package" in fields:
                out.setdefault(fields["Package"], []).append(fields)
        return out
    raise NotThere(f"no Packages index at {base}/{path}")


@dataclass
class Mirrors:
    """What the check has read so far: indexes once per mirror, and mirrors that did not answer."""

    timeout: float
    indexes: dict[str, dict[str, list[dict[str, str]]]]
    down: dict[str, str]

    def index(self, base: str, path: str) -> dict[str, list[dict[str, str]]]:
        key = f"{base}/{path}"
        if key not in self.indexes:
            self.indexes[key] = packages_index(base, path, self.timeout)
        return self.indexes[key]


def _version_key(version: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version)]


def check_apt(item: Item, m: Mirrors) -> Finding:
    if item.mirror == "debian":
        places = [(item.location, f"dists/{DEBIAN_SUITE}/{c}/binary-{item.arch}") for c in DEBIAN_COMPONENTS]
    elif item.mirror == "ubuntu":
        places = [
            (item.location, f"dists/{s}/{c}/binary-{item.arch}") for s in UBUNTU_SUITES for c in UBUNTU_COMPONENTS
        ]
    else:  # NVIDIA's CUDA repository: a flat repository per release and architecture
        arch = {"amd64": "x86_64", "arm64": "sbsa"}[item.arch]
        places = [(item.location, f"{release}/{arch}") for release in UBUNTU_CUDA_RELEASES]
    found: list[tuple[str, str, dict[str, str]]] = []
    for base, path in places:
        try:
            stanzas = m.index(base, path).get(item.name, [])
        except NotThere:
            continue
        for s in stanzas:
            if not item.version or fnmatch.fnmatchcase(s.get("Version", ""), item.version):
                found.append((base, path, s))
    if not found:
        pin = f" at {item.version}" if item.version else ""
        return Finding(item, MISSING, f"no {item.name}{pin} in the mirror's index ({', '.join(p for _, p in places)})")
    base, path, best = max(found, key=lambda f: _version_key(f[2].get("Version", "")))
    filename = best.get("Filename", "")
    flat = item.mirror == "cuda"
    url = f"{base}/{path}/{filename}" if flat else f"{base}/{filename}"
    try:
        with _open(url, m.timeout, method="HEAD"):
            pass
    except NotThere:
        return Finding(item, MISSING, f"the index lists {best.get('Version')} but the mirror has no {shown(filename)}")
    return Finding(item, OK, f"{best.get('Version')} sha256:{best.get('SHA256', '?')} ({path})")


# -- the rest ------------------------------------------------------------------------------------


def check_file(item: Item, m: Mirrors) -> Finding:
    got = sha256_of(item.location, m.timeout)
    want = (item.digest or "").removeprefix("sha256:")
    if not want:
        return Finding(item, UNPINNED, f"served (sha256:{got}); the catalog has no digest to compare: {item.note}")
    if got != want:
        return Finding(item, DIFFERENT, f"the mirror serves sha256:{got}, the catalog's is sha256:{want}")
    return Finding(item, OK, f"sha256:{got}")


def check_key(item: Item, m: Mirrors) -> Finding:
    try:
        fingerprint = openpgp_fingerprint(fetch(item.location, m.timeout, 1 << 20))
    except ValueError as exc:
        return Finding(item, DIFFERENT, f"not an OpenPGP public key: {exc}")
    if fingerprint != item.digest:
        return Finding(item, DIFFERENT, f"the mirror serves key {fingerprint}, not {item.digest}")
    return Finding(item, OK, f"fingerprint {fingerprint}")


def check_image(item: Item, m: Mirrors) -> Finding:
    reference = item.location.split("@", 1)[0]
    host, _, rest = reference.partition("/")
    name, _, tag = rest.rpartition(":")
    last: Exception | None = None
    for scheme in ("https", "http"):
        url = f"{scheme}://{host}/v2/{quote(name)}/manifests/{quote(tag)}"
        try:
            with _open(url, m.timeout, method="HEAD", headers={"Accept": MANIFEST_ACCEPT}) as response:
                served = response.headers.get("Docker-Content-Digest", "")
            break
        except Unreachable as exc:
            last = exc
    else:
        raise Unreachable(str(last))
    if not item.digest:
        return Finding(item, UNPINNED, f"served as {shown(served, 80)}; no upstream digest to compare: {item.note}")
    if served != item.digest:
        return Finding(
            item, DIFFERENT, f"the registry serves {shown(served, 80)} for {tag}, the catalog's is {item.digest}"
        )
    return Finding(item, OK, served)


def check_chart(item: Item, m: Mirrors) -> Finding:
    index = yaml.safe_load(fetch(item.location, m.timeout))
    entries = (index or {}).get("entries", {}).get(item.name, []) if isinstance(index, dict) else []
    match = [e for e in entries if isinstance(e, dict) and str(e.get("version")) == item.version]
    if not match:
        return Finding(item, MISSING, f"{item.name} {item.version} is not in the repository's index.yaml")
    served = f"sha256:{match[0].get('digest', '')}"
    if not item.digest:
        return Finding(item, UNPINNED, f"listed with digest {shown(served, 80)}; the catalog has none: {item.note}")
    if served != item.digest:
        return Finding(item, DIFFERENT, f"the index gives {shown(served, 80)}, the catalog's is {item.digest}")
    return Finding(item, OK, served)


CHECKS: dict[str, Callable[[Item, Mirrors], Finding]] = {
    "apt": check_apt,
    "file": check_file,
    "key": check_key,
    "image": check_image,
    "chart": check_chart,
}


def check(
    root: Path,
    site: Site,
    mirrors: set[str] | None = None,
    timeout: float = 10.0,
    progress: Callable[[Finding], None] | None = None,
) -> list[Finding]:
    """Every manifest item of the chosen mirrors (default: all), each asked of the mirror that must serve it."""
    m = Mirrors(timeout, {}, {})
    out = []
    for item in manifest(root, site).items:
        if mirrors is not None and item.mirror not in mirrors:
            continue
        # A mirror that did not answer is said once; two mirrors may share a host (an apt proxy's paths).
        host = f"{item.mirror} {urlsplit(item.location if '://' in item.location else '//' + item.location).netloc}"
        if host in m.down:
            finding = Finding(item, UNREACHABLE, m.down[host])
        else:
            try:
                finding = CHECKS[item.kind](item, m)
            except NotThere as exc:
                finding = Finding(item, MISSING, f"not on the mirror ({exc})")
            except (TimeoutError, Unreachable) as exc:
                m.down[host] = f"the mirror did not answer: {exc}"
                finding = Finding(item, UNREACHABLE, m.down[host])
        out.append(finding)
        if progress:
            progress(finding)
    return out
