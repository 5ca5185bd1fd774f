"""The real `pulumi preview` of a generated site against `aifactory plan` of the same site, in one run.

    .venv/bin/python benchmarks/preview_bench.py [--sizes 64,1024] [--repeat 2]

For each size it writes the lab stack scaled to N nodes (plan_bench's site), starts a real control
plane on loopback (etcd, kube-apiserver, kube-controller-manager, from the engines) with the
site's CRDs and namespaces, and times, each in a fresh process: `aifactory plan SITE --json` (the
program under Pulumi's mock runtime), and `pulumi preview` under the real CLI with a local file
backend, which runs the same program, and sends every Kubernetes object to the API server as a
server-side dry-run apply. It prints the best of --repeat runs and the ratio, and checks that both
saw the same resources. Not a test: figures from a noisy machine are for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from plan_bench import measure, scaled_site  # noqa: E402

from aifactory.engines import locate  # noqa: E402
from aifactory.pulumi_cli import Cli  # noqa: E402
from aifactory.stackfile import load_stack  # noqa: E402
from aifactory.testhosts import kube, scratch, services  # noqa: E402

PASSPHRASE = "aifactory-preview-bench"  # noqa: S105 - a throwaway copy's key, not a secret


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    engines = locate.ensure(ROOT)
    aifactory = str(Path(sys.executable).with_name("aifactory"))
    with tempfile.TemporaryDirectory(prefix="aifactory-preview-bench-") as tmp:
        tmpdir = Path(tmp)
        cp = kube.start(tmpdir / "kube", engines, contexts=["aifactory-lab"])
        try:
            print(f"{'nodes':>6} {'resources':>9} {'plan s':>8} {'preview s':>10} {'preview/plan':>13} {'same':>5}")
            for n in (int(s) for s in args.sizes.split(",")):
                work = tmpdir / f"size{n}"
                work.mkdir()
                scratch.pulumi_project(ROOT, work, lab_passphrase=False)
                name = f"bench{n}"
                doc = scratch.reencrypted(scaled_site(n), PASSPHRASE)  # the CLI decrypts; the lab's key is not its
                (work / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
                plan = json.loads(
                    subprocess.run(
                        [aifactory, "--root", str(work), "plan", name, "--json"],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                )
                site = load_stack(work, name).site
                kube.apply_crds(cp, services.crd_files(ROOT, site))
                namespaces = [
                    r["inputs"]["metadata"]["name"] for r in plan["resources"] if r["type"].endswith(":Namespace")
                ]
                kube.ensure_namespaces(cp, namespaces)  # so that every namespaced object is dry-run applied too
                env = {"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}
                env["KUBECONFIG"] = str(cp.kubeconfig)
                cli = Cli(engines, work, name, f"file://{work / 'state'}", work / "home", env, say=lambda _m: None)
                cli.select()
                plan_runs = [
                    measure([aifactory, "--root", str(work), "plan", name, "--json"], work, dict(os.environ))[0]
                    for _ in range(args.repeat)
                ]
                preview_runs = []
                steps = 0
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    doc = cli.preview_json()
                    preview_runs.append(time.perf_counter() - t0)
                    engine_only = ("pulumi:pulumi:Stack", "pulumi:providers:pulumi-python")
                    steps = len([s for s in doc["steps"] if not s["newState"]["type"].startswith(engine_only)])
                plan_s, preview_s = min(plan_runs), min(preview_runs)
                same = "yes" if steps == len(plan["resources"]) else f"no ({steps})"
                ratio = preview_s / plan_s
                print(f"{n:6d} {len(plan['resources']):9d} {plan_s:8.2f} {preview_s:10.2f} {ratio:12.2f}x {same:>5}")
        finally:
            kube.stop(tmpdir / "kube")
    print("preview: the real CLI, language host and Kubernetes provider; each object dry-run applied by kube-apiserver")
    return 0


if __name__ == "__main__":
    sys.exit(main())
