"""Every country site's program under the real Pulumi CLI, against a real API server, beside the offline plan.

Each site's stack is copied with its secrets re-encrypted under a test passphrase (its real one
stays with its team), the CRDs it declares objects of are installed at its pinned tags, and its
namespaces exist, so `pulumi preview` sends every Kubernetes object to the API server as a
server-side dry-run apply (pulumi-kubernetes does so in server-side-apply mode, and falls back
silently where a namespace or a kind is missing: hence both are put there first, and the API
server's own audit log is read for every object's dry-run apply and its answer). The GPU operator's Helm release
is excluded (its chart lives on the country's chart mirror, which this machine cannot reach); the
test names it. Then the preview's resources and inputs are compared with `aifactory plan`'s.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from aifactory.engines import locate
from aifactory.manifests import HELM_RELEASE, objects
from aifactory.pulumi_cli import Cli
from aifactory.stackfile import load_stack
from aifactory.testhosts import kube, scratch, services

from .conftest import COUNTRY_SITES, ROOT, plan_of

pytestmark = pytest.mark.cli
PASSPHRASE = "aifactory-tests-country-copy"  # not the lab's: the policy refuses country secrets under that one
UNREACHABLE = {HELM_RELEASE: "its chart is on the site's chart mirror, which this machine cannot reach"}
# Engine-side resources the plan does not record: the stack itself and the default providers.
ENGINE_ONLY = ("pulumi:pulumi:Stack", "pulumi:providers:pulumi-python")


PROVIDER_VERSION = locate.root_engines(ROOT)["pulumi-kubernetes"].version.removeprefix("v")


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
    kube.ensure_namespaces(
        control_plane, [r.inputs["metadata"]["name"] for r in plan.of_type("kubernetes:core/v1:Namespace")]
    )
    cli = site_cli(engines, project, site, tmp_path, control_plane.kubeconfig)
    cli.select()
    excluded = [r.urn for r in plan.resources if r.type in UNREACHABLE]
    seen = len(kube.audit_events(control_plane))
    preview = cli.preview_json(*(a for urn in excluded for a in ("--exclude", urn)))
    steps = _steps(preview)
    planned = {r.urn: r for r in plan.resources if r.type not in UNREACHABLE}
    # The same resources, under the same URNs ...
    assert sorted(steps) == sorted(planned), set(steps) ^ set(planned)
    assert {s["op"] for s in steps.values()} == {"create"}
    # ... with the same inputs, but for what the engine and the provider add (each named, each checked) ...
    for urn, reg in planned.items():
        assert engine_view(reg.type, reg.inputs, control_plane.kubeconfig) == steps[urn]["newState"].get(
            "inputs", {}
        ), urn
    # ... and the API server admitted every Kubernetes object as a server-side dry-run apply.
    events = kube.audit_events(control_plane)[seen:]
    for obj in objects(plan):
        assert admitted(events, obj), (
            f"{obj['kind']} {obj['metadata']['name']}: no dry-run apply the API server admitted"
        )
    diagnostics = [d for d in preview.get("diagnostics", []) if d.get("severity") in ("warning", "error")]
    assert not [d for d in diagnostics if "unknown field" in d.get("message", "")], diagnostics
    # The provider came from the Pulumi home's plugin cache, installed from the engine, not from PATH.
    assert not [d for d in diagnostics if "from $PATH" in d.get("message", "")], diagnostics


def engine_view(type_: str, inputs: dict[str, Any], kubeconfig: Path) -> dict[str, Any]:
    """The plan's inputs as the real engine records them after the provider's Check.

    - a Secret's stringData is folded into data, as one secret (pulumi-kubernetes, Check);
    - the Kubernetes provider gets the kubeconfig it will use and its plugin version, and the engine
      its __internal map;
    - a dynamic resource carries its pickled provider, always secret (the plan leaves it out on purpose).
    """
    out = copy.deepcopy(inputs)
    if type_ == "kubernetes:core/v1:Secret" and "stringData" in out:
        del out["stringData"]
        out["data"] = "[secret]"
    if type_ == "pulumi:providers:kubernetes":
        out |= {"__internal": {}, "kubeconfig": str(kubeconfig), "version": PROVIDER_VERSION}
    if type_ == "pulumi-python:dynamic/aifactory:S3Bucket":
        out["__provider"] = "[secret]"
    return out


def admitted(events: list[dict[str, Any]], obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    meta = obj["metadata"]
    # The API server files a request on a Namespace under that namespace itself.
    namespace = meta["name"] if obj["kind"] == "Namespace" else meta.get("namespace", "")
    for e in events:
        ref = e.get("objectRef", {})
        if (
            e.get("verb") == "patch"
            and "dryRun=All" in e.get("requestURI", "")
            and ref.get("name") == meta["name"]
            and ref.get("namespace", "") == namespace
            and ref.get("apiGroup", "") == group
            and e.get("responseStatus", {}).get("code") in (200, 201)
        ):
            return True
    return False
