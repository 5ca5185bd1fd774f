"""The GPU operator chart, rendered by helm with each site's own values, admitted by the real API server.

The one object the sites' previews cannot send to the API server is the gpu-operator Helm release
(its chart lives on each country's chart mirror). The chart itself is vendored at each pinned tag
(tests/fixtures/schemas/gpu-operator/TAG/chart); the pinned helm renders it with the values the
program gives the release, for the pinned Kubernetes release, and every object it renders is
server-side applied as a dry run with strict field validation (an unknown field is an error
here, where pulumi-kubernetes only warns), after the chart's own CRDs are installed for real.
Each object goes in as helm install sends it, a create: a server-side apply of the same object
refuses what the chart renders as null (v25.3.4's `validator.plugin:` with its default empty env),
which a create prunes.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from aifactory.engines import locate
from aifactory.manifests import helm_releases
from aifactory.testhosts import kube

from .conftest import COUNTRY_SITES, ROOT, plan_of
from .schema_check import FIXTURES

pytestmark = pytest.mark.cli


def render(engines, release, tmp_path) -> list[dict[str, Any]]:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(release.values))
    chart = FIXTURES / "gpu-operator" / release.version / "chart"
    kube_version = locate.root_engines(ROOT)["kube"].version
    argv = [engines.exe("helm"), "template", release.name, str(chart), "--namespace", release.namespace]
    argv += ["--kube-version", kube_version, "--values", str(values), "--include-crds"]
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=True,
        env={**engines.env(), "HELM_CACHE_HOME": str(tmp_path / "cache"), "HELM_CONFIG_HOME": str(tmp_path / "config")},
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("site", COUNTRY_SITES)
def test_the_chart_rendered_with_the_sites_values_is_admitted_by_the_api_server(site, engines, control_plane, tmp_path):
    # The DRA driver's chart is not vendored (its ComputeDomain CRD is, and test_schemas checks it).
    (release,) = [r for r in helm_releases(plan_of(site)) if r.chart == "gpu-operator"]
    docs = render(engines, release, tmp_path)
    kinds = {d["kind"] for d in docs}
    assert {"ClusterPolicy", "Deployment", "CustomResourceDefinition"} <= kinds, kinds
    api = control_plane.client()
    kube.apply_crd_docs(control_plane, [d for d in docs if d["kind"] == "CustomResourceDefinition"])
    kube.ensure_namespaces(control_plane, [release.namespace])
    dyn = DynamicClient(api)
    refused = []
    for doc in docs:
        if doc["kind"] == "CustomResourceDefinition":
            continue
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            # As helm install sends it: a create (nulls the chart renders are pruned, as for helm).
            resource.create(
                body=doc,
                namespace=release.namespace if resource.namespaced else None,
                dry_run="All",
                query_params=[("fieldValidation", "Strict")],
            )
        except ApiException as exc:
            refused.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.status} {exc.body[:300]}")
    assert refused == []
    # The operator's ClusterPolicy carries the site's choices as the chart rendered them.
    (policy,) = [d for d in docs if d["kind"] == "ClusterPolicy"]
    assert policy["spec"]["driver"]["enabled"] is False
    assert policy["spec"]["migManager"]["config"]["default"] == "all-disabled"
