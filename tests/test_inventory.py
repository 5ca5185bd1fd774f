from __future__ import annotations

import shutil

import yaml

from aifactory import inventory
from aifactory.stackfile import load_stack

from .conftest import ROOT, SITES


def test_inventory_groups_and_vars_come_from_the_site():
    stack = load_stack(ROOT, "ma")
    hosts = inventory.hosts(stack.site)["all"]
    assert sorted(hosts["hosts"]) == sorted(n.hostname for n in stack.site.nodes)
    children = hosts["children"]
    assert set(children["gpu_nodes"]["children"]) == {"pool_h100a", "pool_b200a", "pool_gb200a"}
    # One group per GB200 rack: its group_vars hold the rack's IMEX domain.
    assert {k for k in children if k.startswith("rack_")} == {"rack_gb200_r01", "rack_gb200_r02"}
    assert set(children["sku_dgx_b200"]["hosts"]) == {n.hostname for n in stack.site.nodes if n.sku == "dgx-b200"}
    node = stack.site.nodes[0]
    assert hosts["hosts"][node.hostname]["ansible_host"] == str(node.management_ip)
    gv = inventory.group_vars_all(stack.site)
    assert gv["nvidia_driver_version"] == stack.site.gpu_stack.driver
    assert "nccl_ib_hca" not in gv  # per SKU: the ports differ between systems
    assert "nccl_ib_gid_index" not in gv  # InfiniBand
    assert "nccl_ib_gid_index" not in inventory.group_vars_all(load_stack(ROOT, "ng").site)  # RoCE: NCCL finds it
    h100 = inventory.group_vars_sku(stack.site, "dgx-h100")
    assert h100["nvidia_driver_fabric_manager"] is True and h100["nvidia_driver_nvlink5"] is False
    assert [r["name"] for r in h100["rdma_rails"]] == [r.name for r in stack.site.network.fabric.rails]
    assert inventory.group_vars_sku(stack.site, "dgx-b200")["nvidia_driver_nvlink5"] is True


def test_check_catches_drift_and_write_repairs_it(workdir, cli):
    shutil.copytree(ROOT / "inventories", workdir / "inventories")
    code, _, _ = cli("inventory", "--check", root=workdir)
    assert code == 0
    stack_file = workdir / "stacks" / "Pulumi.lab.yaml"
    stack_file.write_text(stack_file.read_text().replace("driver: 535.261.03", "driver: 535.247.01"))
    (workdir / "inventories" / "za" / "group_vars" / "stale.yml").write_text("x: 1\n")
    code, out, _ = cli("inventory", "--check", root=workdir)
    assert code == 1
    assert "inventories/lab/group_vars/all.yml: differs from its stack (run `aifactory inventory lab`)" in out
    assert "inventories/za/group_vars/stale.yml: not rendered from the stack, and Ansible would load it" in out
    code, _, _ = cli("inventory", root=workdir)
    assert code == 0
    assert cli("inventory", "--check", root=workdir)[0] == 0
    rendered = read_inventory((workdir / "inventories" / "lab" / "group_vars" / "all.yml").read_text())
    assert rendered["nvidia_driver_version"] == "535.247.01"


class Tagged(str):
    """A string the inventory wrote with Ansible's !unsafe tag."""


class _InventoryLoader(yaml.SafeLoader):
    pass


_InventoryLoader.add_constructor("!unsafe", lambda loader, node: Tagged(loader.construct_scalar(node)))


def read_inventory(text: str):
    return yaml.load(text, Loader=_InventoryLoader)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_every_string_in_every_inventory_is_unsafe_for_ansible():
    """Site data reaches Ansible only as !unsafe: it is never rendered as a template."""
    files = sorted((ROOT / "inventories").rglob("*.yml"))
    assert len(files) >= 3 * len(SITES)
    for path in files:
        strings = list(_strings(read_inventory(path.read_text())))
        assert strings, path
        plain = [s for s in strings if not isinstance(s, Tagged)]
        assert plain == [], f"{path}: {plain[:3]}"


def test_every_site_has_a_committed_inventory():
    for site in SITES:
        assert (ROOT / "inventories" / site / "hosts.yml").is_file()


def _pyyaml(data) -> str:
    return inventory._pyyaml_dump(inventory.unsafe(data))


def test_direct_emitter_writes_exactly_what_pyyaml_writes():
    # The direct path must be an optimisation only: every site's hosts, and every shape it declines.
    for site in SITES:
        data = inventory.hosts(load_stack(ROOT, site).site)
        direct = inventory._dump(data)
        assert direct == _pyyaml(data), site
        assert "!unsafe" in direct
    tricky = [
        {"true": "x"},  # a key PyYAML quotes: it would read back as a bool
        {"123": "x"},
        {"a b": "x"},
        {"k" * 130: "x"},  # PyYAML writes long keys as `? key`
        {"k": "a b " * 40},  # single-quoted scalars fold at spaces past the width
        {"k": "é"},
        {"k": ""},
        {"k": "it's"},
        {"k": 8},
        {"k": {}},
        {"k": ["a"]},
        {"k": None, "j": {"i": {"h": "v"}}},
    ]
    for data in tricky:
        assert inventory._dump(data) == _pyyaml(data), data
        assert yaml.load(inventory._dump(data), Loader=_UnsafeLoader) == data, data


class _UnsafeLoader(yaml.SafeLoader):
    pass


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def test_direct_emitter_is_taken_for_inventory_shapes(monkeypatch):
    # Without this, a regression to the slow path would pass every other test.
    def refuse(data):
        raise AssertionError("fell back to PyYAML")

    monkeypatch.setattr(inventory, "_pyyaml_dump", refuse)
    data = inventory.hosts(load_stack(ROOT, "za").site)
    assert inventory._dump(data).startswith("all:\n  hosts:\n")
