"""Each grammar of the stack's fields, on values it must take and values it must refuse.

The whole-command corpus (tests/test_untrusted.py) proves every command refuses a bad stack; these
are the grammars one by one, fast, so a loosened pattern fails here at once. Good values are the
stacks' own; bad ones are what a careless or hostile edit would put there.
"""

from __future__ import annotations

import pytest

from aifactory import grammar

CASES = [
    # (grammar, good values, bad values)
    (grammar.ifname, ["host0", "bond0:1", "ibp24s0", "enp170s0f1np1"], ["", ".", "..", "eth0/1", "a b", "x" * 16]),
    (grammar.rdma_device, ["mlx5_0", "irdma0", "rocep1s0f0"], ["Mlx5_0", "0mlx", "mlx5-0", "mlx5_0\n", "a" * 64]),
    (grammar.dns_label, ["lab", "gpu-01", "a" * 63], ["", "-gpu", "gpu-", "GPU", "gpu_01", "a" * 64, "a.b"]),
    (grammar.domain, ["lab.aifactory.internal", "za.example"], ["lab", "1.2.3.4", "a..b", "-a.b"]),
    (grammar.site_code, ["za", "lab"], ["thirteen-char", "Za", ""]),
    (
        grammar.normal_host,
        ["mirror.za.aifactory.internal", "172.29.0.1", "MIRROR.ZA.", "bücher.de"],
        ["a..b", "a_b.c", "", "300.1.1.1"],
    ),
    (
        grammar.mac,
        ["02:a1:f0:00:00:11", "B8:3F:D2:10:00:01"],
        ["02:a1:f0:00:00", "02-a1-f0-00-00-11", "zz:a1:f0:00:00:11"],
    ),
    (
        grammar.fingerprint,
        ["", "EB693B3035CD5710E231E123A4B469963BF863CC"],
        ["eb693b3035cd5710e231e123a4b469963bf863cc", "EB693B3035CD5710E231E123A4B469963BF863CC\n", "EB69"],
    ),
    (
        grammar.dotted(3),
        ["535.261.03", "580.95.05"],
        ["535.261", "535.261.03.1", "535.261.03\n", "\uff15\uff13\uff15.261.03"],
    ),
    (grammar.dotted(2), ["12.8", "11.8"], ["12", "12.8.1", "12.x"]),
    (
        grammar.free_text,
        ["AI factory lab (test hosts)", "Université"],
        ["", " leading", "two\nlines", "tab\there", "x" * 201],
    ),
    (grammar.qualified_name, ["kubernetes.io/no-provisioner", "fsType"], ["", "a/b/c", "-x", "x y"]),
    (grammar.param_value, ["ext4", "a b"], ["", " lead", "new\nline", "é"]),
    (grammar.kube_context, ["aifactory-lab", "admin@za:1"], ["", "-x", "a b", "a\nb"]),
    (grammar.s3_region, ["lab", "za-jnb1"], ["", "ZA", "za_jnb1", "-za"]),
    (grammar.bucket_name, ["lab-evidence", "za.datasets"], ["ab", "Lab", "a..b", "192.168.0.1", "a_b", "a" * 64]),
    (grammar.s3_user, ["za-owner", "lab_ci"], ["", "Za", "-x", "a" * 65]),
    (
        grammar.url(("http", "https")),
        ["http://172.29.0.1:3142/deb.debian.org/debian", "https://mirror.za.aifactory.internal/x"],
        [
            "ftp://x.org/",
            "http://user:pw@x.org/",
            "http://x.org/a b",
            "http://x.org/{x}",
            "http://x.org/\n",
            "http://x.org:99999/",
        ],
    ),
    (
        grammar.registry,
        ["172.29.0.1:5000", "registry.za.aifactory.internal/mirror"],
        ["https://registry.za", "registry.za:0", "registry.za:123456", "registry.za/Path", "registry.za/a//b"],
    ),
    (
        grammar.hostname_scheme,
        ["{site}-gpu-{index:02d}", "{site}-{pool}-{index}"],
        ["{site}-gpu", "{site.__class__}-{index}", "{index!r}", "{host}-{index}", "{index:>5}", "Gpu-{index}"],
    ),
]


@pytest.mark.parametrize(("check", "good", "bad"), CASES, ids=[getattr(c[0], "__name__", "?") for c in CASES])
def test_each_grammar_takes_its_good_values_and_refuses_the_bad(check, good, bad):
    for value in good:
        check(value)
    for value in bad:
        with pytest.raises(ValueError):
            check(value)
