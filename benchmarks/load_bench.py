"""Loading at scale: `validate` and the inventory of 10,000- and 100,000-node sites, beside issue 12's targets.

    .venv/bin/python benchmarks/load_bench.py [--sizes 10000,100000]

Each size is plan_bench's scaled lab stack (networks wide enough to address 100,000 nodes; the
pod network still fails net.capacity past 4,096 nodes: every check runs all the same). `validate`
is timed end to end in a fresh process; the inventory is loaded and rendered in a fresh process
without the policy gate (which refuses such a site). The peer is the pure-Python YAML loader
on the same file, in the same run. Not a test: one machine's figures, printed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from plan_bench import scaled_site  # benchmarks/ is on sys.path when this runs as a script

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {("validate", 10_000): 2.0, ("validate", 100_000): 10.0, ("inventory", 100_000): 20.0}


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[-3:])}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return time.monotonic() - start, proc.stdout


# What validate must find on the scaled lab stacks, and nothing else (it runs every check all the same):
# they keep the lab's ciphertexts under a name that is not the lab's (secrets.lab-passphrase), and past
# 4,096 nodes the lab's /12 pod network holds too few /24 node blocks (net.capacity). Any other outcome,
# an internal error (exit 70) above all, is not the figure the README quotes.
LAB_KEY = "[secrets.lab-passphrase] stacks/Pulumi.bench{n}.yaml: encryptionsalt"
PODS = "[net.capacity] stacks/Pulumi.bench{n}.yaml: aifactory:site.network.pods"
EXPECTED_ERRORS = {4096: {LAB_KEY}, 10**9: {LAB_KEY, PODS}}


def validate(aifactory: str, root: str, n: int) -> tuple[float, int]:
    """Seconds of `aifactory validate` in a fresh process, checked: its exit status and its errors are the expected."""
    start = time.monotonic()
    proc = subprocess.run(
        [aifactory, "--root", root, "validate", f"bench{n}"], capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - start
    errors = {" ".join(line.split()[1:4]).rstrip(":") for line in proc.stdout.splitlines() if line.startswith("error")}
    want = {e.format(n=n) for e in next(v for limit, v in sorted(EXPECTED_ERRORS.items()) if n <= limit)}
    if errors != want or proc.returncode != (2 if want else 0):
        raise SystemExit(f"validate bench{n}: exit {proc.returncode}, errors {sorted(errors)}; expected {sorted(want)}")
    return seconds, proc.returncode


INVENTORY = """
import sys, time
from pathlib import Path
from aifactory.stackfile import load_stack
from aifactory import inventory
start = time.monotonic()
stack = load_stack(Path(sys.argv[1]), sys.argv[2])
loaded = time.monotonic()
inventory.render(stack, Path(sys.argv[1]))
print(f"{loaded - start:.2f} {time.monotonic() - loaded:.2f}")
"""

PURE = """
import sys, time, yaml
from aifactory import stackfile
text = open(sys.argv[1]).read()
start = time.monotonic()
yaml.load(text, Loader=stackfile._PyStackLoader)
print(f"{time.monotonic() - start:.2f}")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    aifactory = str(Path(sys.executable).with_name("aifactory"))
    print(f"{'nodes':>7} {'step':28} {'seconds':>8} {'target':>7}")
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="aifactory-load-") as tmp:
            root = Path(tmp)
            shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
            (root / "stacks").mkdir()
            shutil.copy(ROOT / "stacks" / "lab.passphrase", root / "stacks" / "lab.passphrase")
            path = root / "stacks" / f"Pulumi.bench{n}.yaml"
            path.write_text(yaml.safe_dump(scaled_site(n), sort_keys=False))
            validated, code = validate(aifactory, tmp, n)
            _, out = timed([sys.executable, "-c", INVENTORY, tmp, f"bench{n}"])
            load_s, render_s = (float(x) for x in out.split())
            _, pure = timed([sys.executable, "-c", PURE, str(path)])
            rows = [
                (f"validate (process, exit {code})", validated, TARGETS.get(("validate", n))),
                ("inventory: load", load_s, None),
                ("inventory: render", render_s, None),
                ("inventory: load + render", load_s + render_s, TARGETS.get(("inventory", n))),
                ("YAML parse, pure Python", float(pure), None),
            ]
            for step, seconds, target in rows:
                print(f"{n:7d} {step:28} {seconds:8.2f} {target if target else '':>7}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
