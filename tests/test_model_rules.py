"""Each validator of the site model, on a real stack with one thing made wrong: the error names the rule.

The stacks pass every one of them (tests/test_policy.py loads them all); each case here breaks one
rule, and the loader must refuse it with the rule's own words, naming the field.
"""

from __future__ import annotations

import pytest

from aifactory.errors import ConfigError

from .helpers import crafted


def _bucket(i, **fields):
    return lambda s: s["storage"]["object_store"]["buckets"][i].update(fields)


def _append(key_path, item):
    def change(s):
        node = s
        for k in key_path[:-1]:
            node = node[k]
        node[key_path[-1]].append(item(node[key_path[-1]]))

    return change


CASES = [
    ("lab", _bucket(1, object_lock={"mode": "GOVERNANCE", "days": 30}), "storage.object_store.buckets[1]",
     "an evidence bucket needs object_lock with mode COMPLIANCE"),
    ("lab", _bucket(0, object_lock={"days": 5}, versioning=False), "storage.object_store.buckets[0]",
     "object_lock needs versioning: true"),
    ("lab", _bucket(0, role="evidence", object_lock={"days": 5}), "storage.object_store",
     "one evidence bucket per site, not 2 (lab-datasets, lab-evidence)"),
    ("lab", _append(("tenants",), lambda t: dict(t[0])), "tenants", "duplicate tenant name(s): research"),
    ("lab", _append(("network", "fabric", "rails"), lambda r: {**r[0], "cidr": "172.29.30.0/24"}),
     "network.fabric.rails", "duplicate rail name(s): rail0"),
    ("lab", _append(("storage", "classes"), lambda c: {**c[0], "name": "other"}), "storage.classes",
     "more than one default storage class: local-nvme, other"),
    ("lab", lambda s: s["pools"][0].update(hostname="{site}-" + "x" * 60 + "-{index}"), "pools[0].hostname",
     "not a DNS label"),
    ("lab", lambda s: s.update(country="XX"), "country", "'XX' is not an ISO 3166-1 alpha-2 country code"),
    ("lab", lambda s: s["pools"][0].update(sku="dgx-a100"), "pools[0].sku", "unknown SKU 'dgx-a100'"),
    ("lab", lambda s: s["gpu_stack"].update(gpu_operator="v25.3.3"), "gpu_stack.gpu_operator",
     "gpu-operator chart 'v25.3.3' is not one this project has checked"),
    ("lab", lambda s: s["gpu_stack"].update(network_operator="25.1.0"), "gpu_stack.network_operator",
     "network operator release '25.1.0' is not one this project has checked"),
]  # fmt: skip


@pytest.mark.parametrize(("site", "change", "field", "words"), CASES, ids=[c[3][:40] for c in CASES])
def test_each_model_rule_refuses_its_case(site, change, field, words):
    with pytest.raises(ConfigError) as err:
        crafted(site, change)
    problems = [(p.path, p.message) for p in err.value.problems]
    assert any(path == f"aifactory:site.{field}" and words in message for path, message in problems), problems
