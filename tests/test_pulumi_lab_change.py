"""The SRE's change, end to end under the real CLI: add a node to a copy of the lab stack, then take it out.

`pulumi up` of a two-node copy against a real API server (the lab's control plane, its CRDs) and a
real Ceph RGW (the buckets, by the dynamic provider under the real engine); then a third node:
`pulumi preview --diff` shows exactly that node's resources, `pulumi up` creates them and the API
server has them with the node's labels; then the node is removed: the preview shows exactly their
deletion and `pulumi up` deletes them. `pulumi destroy` ends it, leaving no Kubernetes object.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from aifactory import labels
from aifactory.cli import lab_pulumi
from aifactory.plan import run_plan
from aifactory.pulumi_cli import Cli, changes
from aifactory.secrets import Crypter, read_passphrase_file
from aifactory.stackfile import load_stack
from aifactory.testhosts import kube, rgw, scratch, services

from .conftest import ROOT

pytestmark = pytest.mark.cli
LAB_PASSPHRASE = ROOT / "stacks" / "lab.passphrase"
BMH = "kubernetes:metal3.io/v1alpha1:BareMetalHost"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[rgw.Gateway]:
    stack = load_stack(ROOT, "lab")
    assert stack.s3_credential is not None
    crypter = Crypter.from_state(read_passphrase_file(LAB_PASSPHRASE), stack.encryptionsalt)
    secret = crypter.decrypt(stack.s3_credential.secret_ciphertext)
    directory = tmp_path_factory.mktemp("rgw")
    gw = rgw.start(directory, region="lab", users=[rgw.User("lab-owner", stack.s3_credential.access_key_id, secret)])
    try:
        yield gw
    finally:
        rgw.stop(directory)


def write_copy(where: Path, nodes: int, endpoint: str) -> None:
    """The lab with ``nodes`` nodes, its object store on the test's RGW (loopback, in the copy's ranges)."""
    made = where.parent / f"with-{nodes}-nodes"
    if not made.exists():
        made.mkdir()
        scratch.project_with(ROOT, made, nodes)
    doc = scratch.read_stack(made)
    site = doc["config"]["aifactory:site"]
    site["storage"]["object_store"]["url"] = endpoint
    site["jurisdiction"]["in_country"]["networks"].append("127.0.0.0/8")
    scratch.write_stack(where, doc)


def lab_cli(engines: Any, control_plane: Any, where: Path, tmp_path: Path) -> Cli:
    """The real CLI on the copy's lab stack: state on local disk, the lab passphrase, the test's control plane."""
    cli = Cli(
        engines,
        where,
        "lab",
        f"file://{tmp_path / 'state'}",
        tmp_path / "home",
        {"PULUMI_CONFIG_PASSPHRASE_FILE": str(LAB_PASSPHRASE), "KUBECONFIG": str(control_plane.kubeconfig)},
        say=lambda _m: None,
    )
    cli.select()
    return cli


def bmh(api: Any, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            "metal3.io", "v1alpha1", "metal3-hosts", "baremetalhosts", name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def non_same(preview: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted(
        (s["op"], s["newState" if s["op"] != "delete" else "oldState"]["type"], s["urn"].rsplit("::", 1)[1])
        for s in preview["steps"]
        if s["op"] != "same"
    )


def tenant_policy_is_enforced(api: Any, namespace: str) -> None:
    """The tenants' ValidatingAdmissionPolicy, compiled and run by the API server: a privileged pod is refused."""
    core = client.CoreV1Api(api)

    def pod(name: str, privileged: bool) -> dict[str, Any]:
        container = {"name": "c", "image": "registry.lab.aifactory.internal/pause:3.10"}
        if privileged:
            container["securityContext"] = {"privileged": True}
        return {"metadata": {"name": name}, "spec": {"containers": [container], "automountServiceAccountToken": False}}

    deadline = time.monotonic() + 60
    while True:  # the policy takes effect once the API server has type-checked it
        try:
            core.create_namespaced_pod(namespace, pod("privileged", True), dry_run="All")
        except ApiException as exc:
            assert exc.status in (403, 422), exc.body
            assert "tenant containers may not run privileged" in exc.body
            break
        assert time.monotonic() < deadline, "the tenant admission policy never refused a privileged pod"
        time.sleep(1)
    core.create_namespaced_pod(namespace, pod("plain", False), dry_run="All")  # admitted


def test_a_node_added_to_the_stack_is_exactly_its_resources_and_removing_it_deletes_them(
    engines, control_plane, store, tmp_path
):
    where = scratch.pulumi_project(ROOT, tmp_path / "project")
    write_copy(where, 2, store.endpoint)
    stack = load_stack(where, "lab")
    kube.apply_crds(control_plane, services.crd_files(ROOT, stack.site))
    cli = lab_cli(engines, control_plane, where, tmp_path)
    up = cli.run("up", "--yes", "--skip-preview", capture=True)
    assert "skipped: the gpu-operator Helm release" in up.stdout + up.stderr  # said, per object, with its reason
    api = control_plane.client()
    assert bmh(api, "lab-gpu-01") and bmh(api, "lab-gpu-02") and not bmh(api, "lab-gpu-03")
    assert changes(cli.preview_json("--expect-no-changes")) == {}
    tenant_policy_is_enforced(api, stack.site.tenants[0].name)

    write_copy(where, 3, store.endpoint)
    added = cli.preview_json("--diff")
    assert non_same(added) == [("create", BMH, "lab-gpu-03")]
    text = cli.run("preview", "--diff", capture=True).stdout
    resources = text.split("--outputs:--")[0]  # after it: the stack's outputs (the node list, the GPU count)
    marks = re.findall(r"^\s*(\+|~|-|\+-) (\S+): \((\w+)\)$", resources, re.MULTILINE)
    assert marks == [("+", BMH, "create")], resources
    assert f"{BMH}::lab-gpu-03]" in resources and "+ 1 to create" in text
    assert "to update" not in text and "to delete" not in text
    cli.run("up", "--yes", "--skip-preview", capture=True)
    host = bmh(api, "lab-gpu-03")
    assert host is not None
    site = load_stack(where, "lab").site
    node = next(n for n in site.nodes if n.hostname == "lab-gpu-03")
    assert host["metadata"]["labels"] == {**labels.node_labels(site, node), labels.MANAGED_BY: "aifactory"}
    assert host["spec"]["bootMACAddress"] == node.mac

    write_copy(where, 2, store.endpoint)
    removed = cli.preview_json("--diff")
    assert non_same(removed) == [("delete", BMH, "lab-gpu-03")]
    cli.run("up", "--yes", "--skip-preview", capture=True)
    assert bmh(api, "lab-gpu-03") is None and bmh(api, "lab-gpu-02")

    cli.run("destroy", "--yes", "--skip-preview", capture=True)
    assert lab_pulumi.leftovers(api, run_plan(load_stack(where, "lab"))) == []


def test_a_tenant_removed_from_the_stack_leaves_its_bucket_and_data_on_the_store(
    engines, control_plane, store, tmp_path
):
    """Retiring a tenant deletes its namespace and networks, never its bucket; nor does forgetting it, or destroy."""
    from aifactory.storage import s3

    where = scratch.pulumi_project(ROOT, tmp_path / "project")
    write_copy(where, 1, store.endpoint)
    stack = load_stack(where, "lab")
    assert stack.s3_credential is not None
    kube.apply_crds(control_plane, services.crd_files(ROOT, stack.site))
    cli = lab_cli(engines, control_plane, where, tmp_path)
    cli.run("up", "--yes", "--skip-preview", capture=True)
    crypter = Crypter.from_state(read_passphrase_file(LAB_PASSPHRASE), stack.encryptionsalt)
    creds = s3.Credentials(stack.s3_credential.access_key_id, crypter.decrypt(stack.s3_credential.secret_ciphertext))
    owner = s3.client(store.endpoint, store.region, creds)
    owner.put_object(Bucket="lab-ci", Key="results/run-1.json", Body=b'{"ok": true}')
    core = client.CoreV1Api(control_plane.client())
    assert core.read_namespace("ci").metadata.name == "ci"

    # Retire ci: one entry out of tenants, one into retired_tenants (its bucket, kept until a date).
    doc = scratch.read_stack(where)
    site = doc["config"]["aifactory:site"]
    site["tenants"] = [t for t in site["tenants"] if t["name"] != "ci"]
    site["retired_tenants"] = [{"name": "ci", "buckets": ["lab-ci"], "retain_until": "2032-12-01"}]
    scratch.write_stack(where, doc)
    steps = non_same(cli.preview_json("--diff"))
    deleted = {name for op, _type, name in steps if op == "delete"}
    assert "tenant-ci" in deleted and "ci-nad-rail0" in deleted, steps
    assert not any("bucket-lab-ci" in name for name in deleted), steps
    cli.run("up", "--yes", "--skip-preview", capture=True)
    assert owner.get_object(Bucket="lab-ci", Key="results/run-1.json")["Body"].read() == b'{"ok": true}'

    # The record dropped as well: the bucket leaves the program and the state, and stays on the store.
    del site["retired_tenants"]
    scratch.write_stack(where, doc)
    steps = non_same(cli.preview_json("--diff"))
    assert {name for op, _type, name in steps} == {"bucket-lab-ci"}, steps
    cli.run("up", "--yes", "--skip-preview", capture=True)
    assert owner.get_object(Bucket="lab-ci", Key="results/run-1.json")["Body"].read() == b'{"ok": true}'
    assert "bucket-lab-ci" not in cli.run("stack", "--show-urns", capture=True).stdout

    cli.run("destroy", "--yes", "--skip-preview", capture=True)
    assert {b["Name"] for b in owner.list_buckets()["Buckets"]} >= {"lab-ci", "lab-research", "lab-evidence"}
