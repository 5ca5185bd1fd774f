"""The lab stack under the real Pulumi CLI: its state bucket, `pulumi up`, a preview with no changes, destroy.

The lab keeps its state where a country site keeps its own: in its object store (``s3://`` on
the lab's Ceph RGW), with the passphrase provider. Everything runs in the run's network
namespace, where the store and the API server are. After ``pulumi destroy`` the cluster is asked
for every object the plan declares; any still there is named.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import OperationError

if TYPE_CHECKING:
    from ..engines.locate import Engines
    from ..plan import Plan
    from ..pulumi_cli import Cli
    from ..stackfile import Stack
    from ..testhosts.run import Run


def state_bucket(stack: Stack) -> dict[str, Any]:
    """The declared bucket the stack's ``s3://`` state backend names (it must exist before Pulumi logs in)."""
    from ..storage.spec import site_specs

    url = urlsplit(stack.site.state_backend.url)
    if url.scheme != "s3":
        raise OperationError(f"{stack.shown}: state_backend.url is not s3://: the lab keeps its state in its own store")
    for spec in site_specs(stack.site):
        if spec["bucket"] == url.hostname:
            return spec
    raise OperationError(
        f"{stack.shown}: state_backend.url names bucket {url.hostname}, which the stack does not declare"
    )


def ensure_state_bucket(stack: Stack, client: Any) -> None:
    from ..storage import buckets, site

    spec = state_bucket(stack)
    actions = buckets.converge(client, spec, site.where(stack, spec["bucket"]))
    print(
        f"state bucket {spec['bucket']}: {'created' if actions else 'already there'} ({stack.site.state_backend.url})"
    )


def cli_for(root: Path, stack: Stack, run: Run, engines: Engines) -> Cli:
    from ..pulumi_cli import Cli
    from ..storage.site import credentials
    from ..testhosts.lab_env import passphrase_env

    env = passphrase_env(root, stack.site.code)
    creds = credentials(stack, env)
    extra = {k: env[k] for k in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE") if k in env} | {
        # The state backend's S3 client reads the store's keys as the AWS SDK's own variables.
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "KUBECONFIG": str(run.kube_dir / "kubeconfig"),
    }
    return Cli(engines, root, stack.site.code, stack.site.state_backend.url, run.dir / "pulumi-home", extra)


def up_and_preview(cli: Cli) -> None:
    """`pulumi up`, then a preview that must report no changes (`--expect-no-changes` fails otherwise)."""
    cli.select()
    cli.run("up", "--yes", "--skip-preview", what="pulumi up")
    cli.run("preview", "--expect-no-changes", "--diff", what="pulumi preview (no changes expected)")


def destroy(cli: Cli) -> None:
    cli.run("destroy", "--yes", "--skip-preview", what="pulumi destroy")


def leftovers(api: Any, plan: Plan) -> list[str]:
    """The plan's Kubernetes objects the API server still has."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic import DynamicClient

    from ..manifests import objects

    dyn = DynamicClient(api)
    left = []
    for obj in objects(plan):
        meta = obj["metadata"]
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        try:
            resource.get(name=meta["name"], namespace=meta.get("namespace"))
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        left.append(f"{obj['kind']} {where}{meta['name']}")
    return left
