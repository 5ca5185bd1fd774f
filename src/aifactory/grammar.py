"""Grammars of the stack file's fields: each a full match on ASCII, never a prefix or a search.

A stack file is untrusted input that ends up in Kubernetes names, Ansible variables, apt source
files, nccl.conf and file system paths. Every field is checked here against the grammar of the
system that will read it, so that no value can carry a second line, a template or a shell word
into a config file. Python's ``re`` is used with ``re.ASCII`` and :func:`re.fullmatch` only:
``$`` would let a trailing newline through and ``\\d`` would accept any Unicode digit.
"""

from __future__ import annotations

import re
import string
import unicodedata
from ipaddress import AddressValueError, IPv4Address
from urllib.parse import SplitResult, urlsplit

# How much of a rejected value an error message shows.
SHOWN_MAX = 60


class FieldError(ValueError):
    """A value error about a sub-field of the model being validated: ``loc`` is appended to its path."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def shown(value: object, limit: int = SHOWN_MAX) -> str:
    """A value as an error message may show it: quoted, control characters escaped, cut to a sane length."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    body = text[:limit].encode("unicode_escape").decode("ascii").replace("'", "\\'")
    return f"'{body}'" + (f"... ({len(text)} characters)" if cut else "")


def _full(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


def _need(ok: bool, value: str, what: str) -> str:
    if not ok:
        raise ValueError(f"{shown(value)} is not {what}")
    return value


# Kernel net/core/dev.c dev_valid_name(): at most IFNAMSIZ-1 = 15 bytes, not "." or "..", no "/"
# or whitespace. ":" stays allowed: getifaddrs() reports address labels such as bond0:1, which is
# what NCCL_SOCKET_IFNAME matches against.
_IFNAME = _full(r"[A-Za-z0-9_.:-]{1,15}")
# RDMA device names (rdma-core, IB_DEVICE_NAME_MAX 64): mlx5_0, irdma0, bnxt_re0, rocep1s0f0.
_RDMA = _full(r"[a-z][a-z0-9_]{0,62}")
# RFC 1123 label, lower case (Kubernetes DNS-1123 label).
_LABEL = _full(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAC = _full(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}")
_HEX40 = _full(r"[0-9A-F]{40}")
# RFC 3986 characters: unreserved, reserved and percent-escapes. No space, quote, backslash,
# brace, angle bracket, caret, backtick, pipe or control character.
_URL_CHARS = _full(r"(?:[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+")
_PORT = _full(r"[0-9]{1,5}")
_OCI_PATH = _full(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
# Kubernetes qualified name (a StorageClass provisioner, a parameter key): [prefix/]name.
_QUALIFIED = _full(r"(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
# kubeconfig context names are free-form in kubectl; these are the characters names use in practice.
_CONTEXT = _full(r"[A-Za-z0-9][A-Za-z0-9._@:/-]{0,252}")
_S3_REGION = _full(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_BUCKET = _full(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4ISH = _full(r"[0-9]+(?:\.[0-9]+){3}")
_S3_USER = _full(r"[a-z0-9][a-z0-9_-]{0,63}")
_FREE_TEXT_MAX = 200
_PARAM_VALUE = _full(r"[\x21-\x7e](?:[\x20-\x7e]{0,254}[\x21-\x7e])?")


def ifname(value: str) -> str:
    return _need(
        bool(_IFNAME.fullmatch(value)) and value not in {".", ".."},
        value,
        "a Linux interface name (at most 15 of A-Z a-z 0-9 _ . : -)",
    )


def rdma_device(value: str) -> str:
    return _need(bool(_RDMA.fullmatch(value)), value, "an RDMA device name (e.g. mlx5_0)")


def dns_label(value: str) -> str:
    return _need(bool(_LABEL.fullmatch(value)), value, "a DNS label (a-z, 0-9 and '-', at most 63, RFC 1123)")


def dns_label_ok(value: str) -> bool:
    return bool(_LABEL.fullmatch(value))


def site_code(value: str) -> str:
    """A site code names files, a bridge (af-CODE, 15 bytes at most) and Kubernetes objects."""
    return _need(
        bool(_LABEL.fullmatch(value)) and len(value) <= 12,
        value,
        "a site code (a DNS label of at most 12 characters: a-z, 0-9, '-')",
    )


def hostname(value: str) -> str:
    """An RFC 1123 host name: dot-separated labels, 253 characters at most; no trailing dot here."""
    labels = value.split(".")
    ok = 0 < len(value) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
    # A name made only of digits and dots would be read as an address by resolvers.
    ok = ok and not _IPV4ISH.fullmatch(value)
    return _need(ok, value, "a host name (RFC 1123 labels of a-z, 0-9 and '-')")


def domain(value: str) -> str:
    hostname(value)
    return _need("." in value, value, "a domain of at least two labels")


def normal_host(raw: str) -> str:
    """A host as resolvers see it: lower case, trailing dot removed, IDNA-encoded; an IPv4 address or a name."""
    host = raw[:-1] if raw.endswith(".") else raw
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{shown(raw)} is not a valid internationalised host name") from None
    host = host.lower()
    if _IPV4ISH.fullmatch(host):
        try:
            return str(IPv4Address(host))
        except AddressValueError:
            raise ValueError(f"{shown(raw)} is not an IPv4 address") from None
    try:
        return hostname(host)
    except ValueError:  # said of the value as written, not of its lower-case, IDNA form
        raise ValueError(f"{shown(raw)} is not a host name (RFC 1123 labels of a-z, 0-9 and '-')") from None


def mac(value: str) -> str:
    """A MAC address in lower case; an error echoes it as written."""
    _need(bool(_MAC.fullmatch(value.lower())), value, "a MAC address (aa:bb:cc:dd:ee:ff)")
    return value.lower()


def fingerprint(value: str) -> str:
    return _need(value == "" or bool(_HEX40.fullmatch(value)), value, "an OpenPGP fingerprint (40 upper-case hex)")


def dotted(parts: int) -> object:
    pattern = _full(r"[0-9]{1,6}" + r"\.[0-9]{1,6}" * (parts - 1))

    def check(value: str) -> str:
        return _need(bool(pattern.fullmatch(value)), value, f"a version of {parts} numeric parts (ASCII digits)")

    return check


def pattern(regex: str, what: str) -> object:
    compiled = _full(regex)

    def check(value: str) -> str:
        return _need(bool(compiled.fullmatch(value)), value, what)

    return check


def free_text(value: str) -> str:
    """Names and descriptions for people: any printable Unicode on one line, 200 characters at most."""
    if len(value) > _FREE_TEXT_MAX:
        raise ValueError(f"{shown(value)} is longer than {_FREE_TEXT_MAX} characters")
    bad = [c for c in value if unicodedata.category(c)[0] in {"C", "Z"} and c != " "]
    if bad or value != value.strip() or not value:
        raise ValueError(f"{shown(value)} is not one line of printable text (no control characters or line breaks)")
    return value


def qualified_name(value: str) -> str:
    return _need(bool(_QUALIFIED.fullmatch(value)), value, "a Kubernetes qualified name ([prefix/]name)")


def param_value(value: str) -> str:
    return _need(bool(_PARAM_VALUE.fullmatch(value)), value, "a parameter value (printable ASCII on one line)")


def kube_context(value: str) -> str:
    return _need(bool(_CONTEXT.fullmatch(value)), value, "a kubeconfig context name")


def s3_region(value: str) -> str:
    return _need(bool(_S3_REGION.fullmatch(value)), value, "an S3 region name (a-z, 0-9 and '-')")


# Amazon S3 User Guide, "General purpose bucket naming rules": names must not start with xn--,
# sthree- or amzn-s3-demo- and must not end with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3
# (access point aliases, Object Lambda, Multi-Region Access Points, directory and table buckets).
# A store that is not AWS may take them; a site's names must still be portable to any S3.
S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name(value: str) -> str:
    ok = bool(_BUCKET.fullmatch(value)) and ".." not in value and not _IPV4ISH.fullmatch(value)
    _need(ok, value, "an S3 bucket name (3-63 of a-z, 0-9, '.', '-'; not an address)")
    reserved = [p for p in S3_RESERVED_PREFIXES if value.startswith(p)] + [
        x for x in S3_RESERVED_SUFFIXES if value.endswith(x)
    ]
    return _need(not reserved, value, f"an S3 bucket name S3 allows ({', '.join(reserved)} is reserved by S3)")


def s3_user(value: str) -> str:
    return _need(bool(_S3_USER.fullmatch(value)), value, "an object store user id (1-64 of a-z, 0-9, '_', '-')")


def split_url(value: str, schemes: tuple[str, ...]) -> SplitResult:
    """Split a URL whose every character is RFC 3986 and whose host is normal; refuse credentials in it."""
    if not _URL_CHARS.fullmatch(value) or len(value) > 2048:
        raise ValueError(f"{shown(value)} is not a URL (RFC 3986 characters only: no spaces, quotes, braces or breaks)")
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"{shown(value)} is not a {'/'.join(schemes)} URL")
    if "@" in parts.netloc:
        raise ValueError(f"{shown(value)} carries credentials; they belong in Pulumi secrets, never in a URL")
    return parts


def url(schemes: tuple[str, ...]) -> object:
    """A URL, returned with its host normalised (lower case, no trailing dot, IDNA)."""

    def check(value: str) -> str:
        parts = split_url(value, schemes)
        if parts.scheme == "file":
            return value
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{shown(value)} has an invalid port") from None
        if not parts.hostname:
            raise ValueError(f"{shown(value)} has no host")
        try:
            host = normal_host(parts.hostname)
        except ValueError:  # urlsplit lower-cased the host: say it of the URL as written
            raise ValueError(f"{shown(value)} has no valid host (RFC 1123 labels, or an IPv4 address)") from None
        netloc = host + (f":{port}" if port is not None else "")
        return parts._replace(netloc=netloc).geturl()

    return check


def registry(value: str) -> str:
    """An OCI registry mirror: host[:port][/path], no scheme."""
    head, _, path = value.partition("/")
    host, colon, port = head.partition(":")
    ok_port = not colon or (bool(_PORT.fullmatch(port)) and 0 < int(port) < 65536)
    if not ok_port or (path and not _OCI_PATH.fullmatch(path)):
        raise ValueError(f"{shown(value)} is not a registry (host[:port][/path], lower case, no scheme)")
    return normal_host(host) + (f":{port}" if colon else "") + (f"/{path}" if path else "")


# -- the hostname scheme ------------------------------------------------------------------------

_INDEX_SPEC = _full(r"(?:0[1-9])?d?")
SCHEME_FIELDS = ("site", "pool", "index")


def hostname_scheme(value: str) -> str:
    """A scheme uses only {site}, {pool} and {index} (with an optional zero-pad width, e.g. {index:03d})."""
    if len(value) > 253 or not value.isascii():
        raise ValueError(f"hostname scheme {shown(value)} is not ASCII of at most 253 characters")
    try:
        fields = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"hostname scheme {shown(value)} does not parse: {exc}") from None
    names = []
    for literal, name, spec, conversion in fields:
        if literal and not re.fullmatch(r"[a-z0-9.-]*", literal, re.ASCII):
            raise ValueError(f"hostname scheme {shown(value)}: {shown(literal)} is not host name text")
        if name is None:
            continue
        if name not in SCHEME_FIELDS or conversion is not None:
            raise ValueError(
                f"hostname scheme {shown(value)}: {{{name}}} is not one of {{site}}, {{pool}}, {{index}} "
                "(no attributes, indexes or conversions)"
            )
        if (name == "index" and not _INDEX_SPEC.fullmatch(spec or "")) or (name != "index" and spec):
            raise ValueError(
                f"hostname scheme {shown(value)}: format {shown(spec)} is not allowed; only a zero-pad width "
                "for {index}, as in {index:03d}"
            )
        names.append(name)
    if "index" not in names:
        raise ValueError(f"hostname scheme {shown(value)} must contain {{index}}")
    return value


_NODE_RANGE = _full(r"([1-9][0-9]{0,5})(?:-([1-9][0-9]{0,5}))?")


def node_range(value: str) -> str:
    """Node numbers of a pool, 1-based: "7" or "9-20" (first not above last)."""
    m = _NODE_RANGE.fullmatch(value)
    ok = bool(m) and (m.group(2) is None or int(m.group(1)) <= int(m.group(2)))  # type: ignore[union-attr]
    return _need(ok, value, 'a node range of the pool ("7" or "9-20", 1-based, first not above last)')
