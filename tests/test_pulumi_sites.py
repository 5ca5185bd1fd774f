"""Every country site's program under the real Pulumi CLI, against a real API server, beside the offline plan.

Each site's stack is copied with its secrets re-encrypted under a test passphrase (its real one
stays with its team), the CRDs it declares objects of are installed at its pinned tags, and its
namespaces exist, so `pulumi preview` sends every Kubernetes object to the API server as a
server-side dry-run apply (pulumi-kubernetes does so in server-side-apply mode, and falls back
silently where a namespace or a kind is missing: hence both are put there first, and every
object's outputs are checked to have come back from the server). The GPU operator's Helm release
is excluded (its chart lives on the country's chart mirror, which this machine cannot reach); the
test names it. Then the preview's resources and inputs are compared with `aifactory plan`'s.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from aifactory.manifests import HELM_RELEASE
from aifactory.pulumi_cli import Cli
from aifactory.stackfile import load_stack
from aifactory.testhosts import kube, scratch, services

from .conftest import COUNTRY_SITES, ROOT, plan_of

pytestmark = pytest.mark.cli
PASSPHRASE = "aifactory-tests-country-copy"  # not the lab's: the policy refuses country secrets under that one
UNREACHABLE = {HELM_RELEASE: "its chart is on the site's chart mirror, which this machine cannot reach"}
# Engine-side resources the plan does not record: the stack itself and the default providers.
ENGINE_ONLY = ("pulumi:pulumi:Stack", "pulumi:providers:pulumi-python")


def site_cli(engines, project, site: str, tmp_path, kubeconfig) -> Cli:
    return Cli(
        engines,
        project,
        site,
        f"file://{tmp_path / 'state'}",
        tmp_path / "home",
        {"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "KUBECONFIG": str(kubeconfig)},
        say=lambda _m: None,
    )


def _namespaces(cp: kube.ControlPlane, names: set[str]) -> None:
    core = client.CoreV1Api(cp.client())
    for name in sorted(names):
        try:
            core.create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise


def _steps(preview: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["urn"]: s for s in preview["steps"] if not s["newState"]["type"].startswith(ENGINE_ONLY)}


@pytest.mark.parametrize("site", COUNTRY_SITES)
def test_the_api_server_admits_every_object_of_the_site_and_the_preview_is_the_plan(
    site, engines, control_plane, tmp_path
):
    project = scratch.country_copy(ROOT, tmp_path / "project", site, PASSPHRASE)
    model = load_stack(project, site).site
    plan = plan_of(site)
    kube.apply_crds(control_plane, services.crd_files(ROOT, model))
    _namespaces(control_plane, {r.inputs["metadata"]["name"] for r in plan.of_type("kubernetes:core/v1:Namespace")})
    cli = site_cli(engines, project, site, tmp_path, control_plane.kubeconfig)
    cli.select()
    excluded = [r.urn for r in plan.resources if r.type in UNREACHABLE]
    preview = cli.preview_json(*(a for urn in excluded for a in ("--exclude", urn)))
    steps = _steps(preview)
    planned = {r.urn: r for r in plan.resources if r.type not in UNREACHABLE}
    # The same resources ...
    assert sorted(steps) == sorted(planned), set(steps) ^ set(planned)
    assert {s["op"] for s in steps.values()} == {"create"}
    # ... with the same inputs ...
    for urn, reg in planned.items():
        assert comparable(steps[urn]["newState"].get("inputs", {})) == comparable(reg.inputs), urn
    # ... and every Kubernetes object came back from the API server's dry run, with no warning.
    for urn, step in steps.items():
        if step["newState"]["type"].startswith("kubernetes:") and not step["newState"]["type"].startswith("pulumi:"):
            meta = step["newState"].get("outputs", {}).get("metadata", {})
            assert meta.get("uid") and meta.get("managedFields"), f"{urn}: not sent to the API server"
    warnings = [d for d in preview.get("diagnostics", []) if d.get("severity") in ("warning", "error")]
    assert not [d for d in warnings if "unknown field" in d.get("message", "")], warnings


def comparable(inputs: dict[str, Any]) -> dict[str, Any]:
    return inputs
