"""Object store apply and check times for 1, 10 and 100 buckets on a real Ceph RGW (loopback).

    .venv/bin/python benchmarks/storage_bench.py [--sizes 1,10,100]

For each size it declares N buckets in a copy of the lab site (every tenth an evidence-style
bucket with object lock, the rest data buckets with a principal policy), then times, through
the same code as `aifactory storage apply/check`:
  apply (create)  the first apply, which creates and configures every bucket
  apply (no-op)   a second apply, which reads every bucket and changes nothing
  check           a full drift check (reads every bucket, lists the account's buckets)
and, as the peer in the same run, N bare boto3 create_bucket calls (the floor: one request per
bucket, nothing configured). It prints seconds, S3 requests per bucket and the ratio to the peer.
Not a test: figures from a noisy 2-core machine are for reading, not for asserting.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from aifactory.stackfile import Stack, parse_stack
from aifactory.storage import s3, site
from aifactory.testhosts import rgw

ROOT = Path(__file__).resolve().parents[1]
CREDS = s3.Credentials("BENCHOWNERKEY0001", "bench-owner-secret-0001")


def bench_stack(n: int, prefix: str, endpoint: str) -> Stack:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())
    s = doc["config"]["aifactory:site"]
    s["jurisdiction"]["in_country"]["networks"].append("127.0.0.0/8")
    store = s["storage"]["object_store"]
    store["url"] = endpoint
    store["principals"] = ["bench-reader"]
    evidence, data = store["buckets"][1], store["buckets"][0]
    store["buckets"] = []
    for i in range(n):
        b = copy.deepcopy(evidence if i == 0 else data)
        b["name"] = f"{prefix}-{i:04d}"
        if i % 10 == 0 and i:
            b["object_lock"] = {"mode": "GOVERNANCE", "days": 1}
        store["buckets"].append(b)
    return parse_stack(doc, "lab", ROOT / "stacks" / "Pulumi.lab.yaml", "bench")


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, **_kw: Any) -> None:
        self.n += 1


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,10,100")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="aifactory-s3bench-") as tmp:
        t0 = time.perf_counter()
        gw = rgw.start(
            Path(tmp) / "rgw",
            region="lab",
            users=[
                rgw.User("bench", CREDS.access_key_id, CREDS.secret_access_key),
                rgw.User("bench-reader", "BENCHREADERKEY01", "bench-reader-secret-01"),
            ],
        )
        print(f"Ceph RGW up in {time.perf_counter() - t0:.1f} s at {gw.endpoint}")
        try:
            client = s3.client(gw.endpoint, "lab", CREDS)
            calls = Counter()
            client.meta.events.register("before-send.s3", calls)
            # Warm the gateway (RGW creates its data pools on the first bucket).
            client.create_bucket(Bucket="warm-up", CreateBucketConfiguration={"LocationConstraint": "lab"})
            client.delete_bucket(Bucket="warm-up")
            print(
                f"{'buckets':>7} {'apply s':>8} {'req/bkt':>7} {'no-op s':>8} {'req/bkt':>7} "
                f"{'check s':>8} {'peer s':>7} {'apply/peer':>10} {'no-op/peer':>10}"
            )
            for i, n in enumerate(sizes):
                stack = bench_stack(n, f"b{i}", gw.endpoint)

                def quiet(_m: str) -> None:
                    pass

                calls.n = 0
                t_apply = timed(lambda stack=stack: site.apply(stack, client, say=quiet))
                r_apply = calls.n / n
                calls.n = 0
                t_noop = timed(lambda stack=stack: site.apply(stack, client, say=quiet))
                r_noop = calls.n / n
                report: list[Any] = []
                t_check = timed(lambda stack=stack, report=report: report.append(site.check(stack, client)))
                assert not report[0].drift, [str(d) for d in report[0].drift][:3]  # earlier sizes are extras
                names = [f"p{i}-{j:04d}" for j in range(n)]
                t_peer = timed(
                    lambda names=names: [
                        client.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": "lab"})
                        for b in names
                    ]
                )
                print(
                    f"{n:>7} {t_apply:>8.2f} {r_apply:>7.1f} {t_noop:>8.2f} {r_noop:>7.1f} "
                    f"{t_check:>8.2f} {t_peer:>7.2f} {t_apply / t_peer:>9.1f}x {t_noop / t_peer:>9.1f}x"
                )
        finally:
            rgw.stop(Path(tmp) / "rgw")


if __name__ == "__main__":
    main()
