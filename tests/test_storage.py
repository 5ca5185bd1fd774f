"""Buckets and evidence against a real Ceph RGW on loopback (no S3 mock anywhere in this file).

One gateway serves the module (about 13 s to start); each test works on its own bucket names.
The RGW's zonegroup api_name is the lab region, so the server itself enforces residency.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

from aifactory.cli import main as cli_main
from aifactory.secrets import Crypter, read_passphrase_file
from aifactory.stackfile import Stack, load_stack
from aifactory.storage import buckets, s3, site, spec
from aifactory.storage.provider import BucketProvider, credentials_from_config
from aifactory.testhosts import rgw

from .conftest import ROOT
from .s3_faults import FaultProxy

pytestmark = pytest.mark.skipif(
    bool(rgw.missing_programs()),
    reason=f"Ceph RGW not installed ({', '.join(rgw.missing_programs())}); `make setup` installs it as root",
)

LAB_PASSPHRASE = ROOT / "stacks" / "lab.passphrase"
REGION = "lab"
LAB_URL = "http://172.29.0.1:9000"


def _lab_creds() -> s3.Credentials:
    stack = load_stack(ROOT, "lab")
    assert stack.s3_credential is not None
    crypter = Crypter.from_state(read_passphrase_file(LAB_PASSPHRASE), stack.encryptionsalt)
    return s3.Credentials(stack.s3_credential.access_key_id, crypter.decrypt(stack.s3_credential.secret_ciphertext))


OWNER = _lab_creds()
INTRUDER = s3.Credentials("INTRUDERKEY0001", "intruder-secret-0001")
TRAINING = s3.Credentials("TRAININGKEY0001", "training-secret-0001")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rgw.Gateway]:
    directory = tmp_path_factory.mktemp("rgw")
    users = [
        rgw.User("lab", OWNER.access_key_id, OWNER.secret_access_key),
        rgw.User("intruder", INTRUDER.access_key_id, INTRUDER.secret_access_key),
        rgw.User("lab-training", TRAINING.access_key_id, TRAINING.secret_access_key),
    ]
    gw = rgw.start(directory, region=REGION, users=users)
    try:
        yield gw
    finally:
        rgw.stop(directory)


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(LAB_PASSPHRASE))


def raw_client(endpoint: str, creds: s3.Credentials) -> Any:
    cfg = Config(request_checksum_calculation="when_required", retries={"total_max_attempts": 1})
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        region_name=REGION,
        config=cfg,
    )


def owner(prefix: str) -> s3.Credentials:
    """Each test's own store account, so its buckets are all the account owns."""
    return s3.Credentials(f"OWNER{prefix.upper()}KEY0001", f"{prefix}-owner-secret-0001")


def project(
    tmp: Path,
    gateway: rgw.Gateway,
    prefix: str,
    change: Callable[[dict[str, Any]], None] | None = None,
    secret: str | None = None,
    endpoint: str | None = None,
    tenants: bool = False,
) -> Path:
    """A copy of the project whose lab site keeps its buckets, named PREFIX-*, on ``endpoint``
    (default: the gateway), reached with the keys of :func:`owner`."""
    creds = owner(prefix)
    rgw.add_user(gateway.directory, rgw.User(f"owner-{prefix}", creds.access_key_id, creds.secret_access_key))
    endpoint = endpoint or gateway.endpoint
    root = tmp / "project"
    root.mkdir(exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(ROOT / "stacks", root / "stacks", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    for extra in ("roles", "inventories", "playbooks", "templates"):
        if (ROOT / extra).exists() and not (root / extra).exists():
            (root / extra).symlink_to(ROOT / extra)
    path = root / "stacks" / "Pulumi.lab.yaml"
    doc = yaml.safe_load(path.read_text())
    s = doc["config"]["aifactory:site"]
    s["jurisdiction"]["in_country"]["networks"].append("127.0.0.0/8")
    store = s["storage"]["object_store"]
    store["url"] = endpoint
    for b in store["buckets"]:
        b["name"] = b["name"].replace("lab-", f"{prefix}-", 1)
    if not tenants:  # the site's own buckets only, unless the test is about tenants
        s["tenants"] = []
    for t in s["tenants"]:  # tenants' buckets and store users too, so no two tests meet on one
        t["buckets"] = [{"name": f"{prefix}-{t['name']}", "purpose": f"data of tenant {t['name']}"}]
        t["principal"] = f"{prefix}-{t['name']}"
    if change:
        change(s)
    crypter = Crypter.from_state(read_passphrase_file(LAB_PASSPHRASE), doc["encryptionsalt"])
    doc["config"]["aifactory:objectStoreCredentials"] = {
        "access_key_id": creds.access_key_id,
        "secret_access_key": {"secure": crypter.encrypt(creds.secret_access_key if secret is None else secret)},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def run(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    code = cli_main(["--root", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def lab_stack(root: Path) -> Stack:
    return load_stack(root, "lab")


# -- create, a second apply, drift ------------------------------------------------------


def test_apply_creates_each_bucket_as_declared_and_a_second_apply_changes_nothing(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "t1")
    code, out, err = run(capsys, root, "storage", "apply", "lab")
    assert code == 0, err
    assert "site lab, bucket t1-datasets: create in lab" in out
    assert "site lab, bucket t1-evidence: create in lab with object lock" in out
    assert "2 of 2 bucket(s) as declared (2 changed)" in out

    raw = raw_client(gateway.endpoint, owner("t1"))
    assert raw.get_bucket_location(Bucket="t1-evidence")["LocationConstraint"] == REGION
    assert raw.get_bucket_versioning(Bucket="t1-evidence")["Status"] == "Enabled"
    lock = raw.get_object_lock_configuration(Bucket="t1-evidence")["ObjectLockConfiguration"]
    assert lock == {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}}}
    tags = {t["Key"]: t["Value"] for t in raw.get_bucket_tagging(Bucket="t1-evidence")["TagSet"]}
    assert tags["aifactory.io/site"] == "lab" and tags["aifactory.io/jurisdiction"] == "ZA"
    assert tags["aifactory.io/data-classification"] == "internal"
    policy = json.loads(raw.get_bucket_policy(Bucket="t1-evidence")["Policy"])
    assert any(s["Sid"] == "NoDeletes" and "s3:DeleteObjectVersion" in s["Action"] for s in policy["Statement"])
    rules = raw.get_bucket_lifecycle_configuration(Bucket="t1-datasets")["Rules"]
    assert rules[0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}

    code, out, _ = run(capsys, root, "storage", "apply", "lab")
    assert code == 0
    assert "create" not in out and "set " not in out
    assert "2 of 2 bucket(s) as declared (0 changed)" in out
    code, out, _ = run(capsys, root, "storage", "check", "lab")
    assert code == 0 and "store as declared" in out


def test_check_reports_each_kind_of_drift_and_apply_repairs_it(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "t2")
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    raw = raw_client(gateway.endpoint, owner("t2"))
    raw.put_bucket_versioning(Bucket="t2-datasets", VersioningConfiguration={"Status": "Suspended"})
    raw.delete_bucket_tagging(Bucket="t2-datasets")
    raw.delete_bucket_policy(Bucket="t2-evidence")
    raw.put_object_lock_configuration(
        Bucket="t2-evidence",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    raw.delete_bucket_lifecycle(Bucket="t2-datasets")
    raw.create_bucket(Bucket="t2-stray", CreateBucketConfiguration={"LocationConstraint": REGION})

    code, out, _ = run(capsys, root, "storage", "check", "lab", "--json")
    assert code == 1
    report = json.loads(out)
    found = {(d["bucket"], d["field"]) for d in report["drift"]}
    assert found == {
        ("t2-datasets", "versioning"),
        ("t2-datasets", "tags"),
        ("t2-datasets", "lifecycle"),
        ("t2-evidence", "policy"),
        ("t2-evidence", "objectLock"),
    }
    assert "t2-stray" in report["extra"]
    assert report["buckets"]["t2-evidence"]["object_lock"] == {"mode": "GOVERNANCE", "days": 1}

    code, out, _ = run(capsys, root, "storage", "check", "lab")
    assert code == 1
    assert "site lab, bucket t2-datasets: DRIFT" in out
    assert "t2-datasets: versioning: declared true, store has false" in out
    assert "site lab, bucket t2-stray: EXTRA (on the store, not declared)" in out

    code, out, _ = run(capsys, root, "storage", "apply", "lab")
    assert code == 0
    assert "site lab, bucket t2-datasets: set versioning" in out
    assert "site lab, bucket t2-evidence: set objectLock" in out
    assert "t2-stray: on the store but not declared; left as it is (never deleted)" in out
    raw.head_bucket(Bucket="t2-stray")  # still there
    raw.delete_bucket(Bucket="t2-stray")
    code, out, _ = run(capsys, root, "storage", "check", "lab")
    assert code == 0, out
    assert "t2-evidence: ok (lab, versioning on, lock COMPLIANCE 30d)" in out


def test_check_reports_a_missing_bucket(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "t3")
    code, out, _ = run(capsys, root, "storage", "check", "lab")
    assert code == 1
    assert "site lab, bucket t3-datasets: MISSING" in out
    assert "site lab, bucket t3-evidence: MISSING" in out


def test_object_lock_cannot_be_added_to_an_existing_bucket(gateway, tmp_path, capsys):
    def lock_datasets(s: dict[str, Any]) -> None:
        s["storage"]["object_store"]["buckets"][0]["object_lock"] = {"days": 5}

    root = project(tmp_path, gateway, "t4")
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    root = project(tmp_path, gateway, "t4", change=lock_datasets)
    code, out, _ = run(capsys, root, "storage", "apply", "lab")
    assert code == 1
    assert "site lab, bucket t4-datasets: object lock can only be enabled when a bucket is created" in out
    assert "FAILED: t4-datasets" in out
    code, out, _ = run(capsys, root, "storage", "check", "lab")
    assert "(apply cannot repair this)" in out


# -- residency and object lock, enforced by the server -------------------------------------


def test_the_store_refuses_a_foreign_region(gateway, tmp_path, capsys):
    def foreign(s: dict[str, Any]) -> None:
        s["storage"]["object_store"]["region"] = "ke-nbo1"

    root = project(tmp_path, gateway, "t5", change=foreign)
    code, out, _ = run(capsys, root, "storage", "apply", "lab")
    assert code == 1
    assert (
        "error: site lab, bucket t5-datasets: create: the store refuses this location "
        "(its region differs from the site's) (InvalidLocationConstraint 400)"
    ) in out
    raw = raw_client(gateway.endpoint, owner("t5"))
    with pytest.raises(ClientError):
        raw.head_bucket(Bucket="t5-datasets")


def test_a_locked_record_cannot_be_deleted_and_a_locked_bucket_is_never_deleted(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "t6")
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    record = root / "runs" / "lab" / "audit.md"
    record.parent.mkdir(parents=True)
    record.write_text("# audit\n")
    assert run(capsys, root, "evidence", "push", "lab", str(record))[0] == 0
    raw = raw_client(gateway.endpoint, owner("t6"))
    (obj,) = raw.list_object_versions(Bucket="t6-evidence")["Versions"]
    with pytest.raises(ClientError) as refused:
        raw.delete_object(Bucket="t6-evidence", Key=obj["Key"], VersionId=obj["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    client = site.connect(lab_stack(root), owner("t6"))
    with pytest.raises(s3.StoreError, match="refusing to delete a bucket with object lock"):
        buckets.delete(client, "t6-evidence", "site lab, bucket t6-evidence")
    raw.put_object(Bucket="t6-datasets", Key="data", Body=b"1")
    with pytest.raises(s3.StoreError, match="refusing to delete a bucket that is not empty"):
        buckets.delete(client, "t6-datasets", "site lab, bucket t6-datasets")
    raw.head_bucket(Bucket="t6-datasets")


def test_only_the_sites_principals_reach_its_buckets(gateway, tmp_path, capsys):
    def principals(s: dict[str, Any]) -> None:
        s["storage"]["object_store"]["principals"] = ["lab-training"]

    root = project(tmp_path, gateway, "t7", change=principals)
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    raw_client(gateway.endpoint, owner("t7")).put_object(Bucket="t7-datasets", Key="shard-0", Body=b"tokens")
    training = raw_client(gateway.endpoint, TRAINING)
    assert training.get_object(Bucket="t7-datasets", Key="shard-0")["Body"].read() == b"tokens"
    intruder = raw_client(gateway.endpoint, INTRUDER)
    with pytest.raises(ClientError) as refused:
        intruder.get_object(Bucket="t7-datasets", Key="shard-0")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


# -- evidence ---------------------------------------------------------------------------


def test_evidence_round_trip_proves_every_hash(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "t8")
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    files = []
    records = root / "runs" / "lab" / "20260101T000000-evidence"
    records.mkdir(parents=True)
    for name, body in (
        ("verify.json", b'{"ok": true}\n'),
        ("verify.xml", b"<testsuites/>\n"),
        ("bootstrap.txt", b"ok\n"),
    ):
        (records / name).write_bytes(body)
        files.append(str(records / name))
    code, out, _ = run(capsys, root, "evidence", "push", "lab", *files)
    assert code == 0, out
    digest = hashlib.sha256(b'{"ok": true}\n').hexdigest()
    assert re.search(rf"bucket t8-evidence, lab/\d{{4}}-\d{{2}}-\d{{2}}/{digest}/verify.json: recorded", out)
    code, out, _ = run(capsys, root, "evidence", "push", "lab", files[0])
    assert code == 0 and "already recorded" in out

    code, out, _ = run(capsys, root, "evidence", "list", "lab")
    assert code == 0 and "3 record(s)" in out and digest in out
    code, out, _ = run(capsys, root, "evidence", "check", "lab")
    assert code == 0, out
    assert "3 of 3 record(s) proven" in out

    raw = raw_client(gateway.endpoint, owner("t8"))
    head = raw.head_object(Bucket="t8-evidence", Key=f"lab/{_day(out)}/{digest}/verify.json")
    assert head["Metadata"]["sha256"] == digest and head["ObjectLockMode"] == "COMPLIANCE"

    # A record whose content does not match its key is caught (planted by hand, outside the command).
    forged = f"lab/2026-01-01/{hashlib.sha256(b'original').hexdigest()}/forged.txt"
    body = b"altered"
    raw.put_object(
        Bucket="t8-evidence",
        Key=forged,
        Body=body,
        Metadata={"sha256": hashlib.sha256(b"original").hexdigest()},
        ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
    )
    code, out, _ = run(capsys, root, "evidence", "check", "lab")
    assert code == 1
    assert f"{forged}: content hashes to {hashlib.sha256(body).hexdigest()}" in out
    assert "3 of 4 record(s) proven; 1 FAILED" in out


def _day(out: str) -> str:
    m = re.search(r"lab/(\d{4}-\d{2}-\d{2})/", out)
    return m.group(1) if m else ""


def test_evidence_push_without_files_takes_the_newest_run_evidence(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "t9")
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    code, _, err = run(capsys, root, "evidence", "push", "lab")
    assert code == 2 and "holds no *-evidence directory" in err
    for stamp, body in (("20260101T000000", b"old"), ("20260102T000000", b"new")):
        d = root / "runs" / "lab" / f"{stamp}-evidence"
        d.mkdir(parents=True)
        (d / "summary.txt").write_bytes(body)
    code, out, _ = run(capsys, root, "evidence", "push", "lab")
    assert code == 0
    assert hashlib.sha256(b"new").hexdigest() in out and hashlib.sha256(b"old").hexdigest() not in out


# -- faults -----------------------------------------------------------------------------


def test_store_down_is_one_line_naming_site_and_bucket(gateway, tmp_path, capsys):
    port = rgw.free_port("127.0.0.1")
    root = project(tmp_path, gateway, "f1", endpoint=f"http://127.0.0.1:{port}")
    code, out, err = run(capsys, root, "storage", "check", "lab")
    assert code == 1
    assert "error: site lab, bucket f1-datasets: read: the store did not answer" in err
    assert "Traceback" not in out + err


def test_wrong_credentials_are_named_and_nothing_is_created(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "f2", secret="not-the-secret")
    code, out, err = run(capsys, root, "storage", "apply", "lab")
    assert code == 1
    assert "site lab, bucket f2-datasets: read: the secret key is wrong for this access key (wrong credentials)" in out
    assert "not-the-secret" not in out + err
    with pytest.raises(ClientError):
        raw_client(gateway.endpoint, owner("f2")).head_bucket(Bucket="f2-datasets")


def test_a_name_taken_by_another_account_is_refused(gateway, tmp_path, capsys):
    raw_client(gateway.endpoint, INTRUDER).create_bucket(
        Bucket="f3-datasets", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    root = project(tmp_path, gateway, "f3")
    code, out, _ = run(capsys, root, "storage", "apply", "lab")
    assert code == 1
    assert "error: site lab, bucket f3-datasets: read: access denied (AccessDenied 403)" in out or (
        "the name is taken by another account" in out
    )
    assert "site lab, bucket f3-evidence: converged" in out
    assert "1 of 2 bucket(s) as declared (1 changed); FAILED: f3-datasets" in out


def test_throttling_is_retried_and_a_create_cut_short_converges_on_the_next_run(gateway, tmp_path, capsys):
    proxy = FaultProxy(gateway.endpoint)
    try:
        root = project(tmp_path, gateway, "f4", endpoint=proxy.endpoint)
        proxy.throttle_first(3)
        code, out, _ = run(capsys, root, "storage", "apply", "lab")
        assert code == 0, out
        assert [s for _m, _p, s in proxy.seen[:3]] == [503, 503, 503]

        # Every PUT ?versioning is refused: the create of the next buckets stops half way.
        proxy.rule = lambda method, path: method == "PUT" and "versioning" in path
        root = project(tmp_path, gateway, "f5", endpoint=proxy.endpoint)
        code, out, _ = run(capsys, root, "storage", "apply", "lab")
        assert code == 1
        assert "error: site lab, bucket f5-datasets: set versioning: the store is throttling requests" in out
        code, out, _ = run(capsys, root, "storage", "check", "lab")
        assert code == 1 and "f5-datasets: versioning: declared true, store has false" in out

        proxy.rule = lambda _m, _p: False
        code, out, _ = run(capsys, root, "storage", "apply", "lab")
        assert code == 0, out
        assert "create" not in out  # the half-made buckets are finished, not made again
        assert run(capsys, root, "storage", "check", "lab")[0] == 0
    finally:
        proxy.close()


# -- the Pulumi dynamic provider, through Pulumi's own (de)serialisation ---------------------


_UNPICKLE = """
import base64, sys, dill
p = dill.loads(base64.b64decode(sys.stdin.read()))
print(type(p).__module__ + "." + type(p).__name__, p._creds)
"""


def test_the_pickled_provider_holds_no_credentials_and_configure_supplies_them(gateway, tmp_path):
    import dill
    from pulumi.dynamic import ConfigureRequest
    from pulumi.dynamic import dynamic as pulumi_dynamic
    from pulumi.dynamic.config import Config

    root = project(tmp_path, gateway, "p1")
    creds = owner("p1")
    stack = lab_stack(root)
    provider = BucketProvider()
    blob = pulumi_dynamic.serialize_provider(provider)
    raw = base64.b64decode(blob)
    assert creds.secret_access_key.encode() not in raw and creds.access_key_id.encode() not in raw

    (desired,) = [d for d in spec.site_specs(stack.site) if d["bucket"] == "p1-datasets"]
    assert not {"access_key_id", "secret_access_key"} & set(desired)
    config = {
        "aifactory:objectStoreCredentials": json.dumps(
            {"access_key_id": creds.access_key_id, "secret_access_key": creds.secret_access_key}
        )
    }
    props = {**desired, "__provider": blob}
    # What the SDK's provider process does (pulumi/dynamic/__main__.py get_provider; importing that
    # module starts its gRPC server): unpickle the provider, then configure it with the stack's config.
    live = dill.loads(base64.b64decode(blob))
    assert live._creds is None
    # A fresh interpreter, as the provider process is, loads the same bytes (by reference, from this module).
    fresh = subprocess.run(
        [sys.executable, "-c", _UNPICKLE],
        input=blob,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert fresh.returncode == 0 and fresh.stdout.strip() == "aifactory.storage.provider.BucketProvider None", fresh
    live.configure(ConfigureRequest(Config(raw_config=config, project_name="aifactory")))
    created = live.create(props)
    assert created.id == "p1-datasets" and created.outs == desired
    assert creds.secret_access_key not in json.dumps(created.outs)
    assert live.read("p1-datasets", props).outs["versioning"] is True

    changed = {**desired, "tags": {**desired["tags"], "aifactory.io/data-classification": "restricted"}}
    diff = live.diff("p1-datasets", desired, changed)
    assert diff.changes and not diff.replaces
    live.update("p1-datasets", desired, changed)
    assert live.read("p1-datasets", props).outs["tags"]["aifactory.io/data-classification"] == "restricted"
    moved = live.diff("p1-datasets", desired, {**desired, "region": "za-jnb1"})
    assert moved.replaces == ["region"]
    locked = live.check(desired, {**desired, "objectLock": {"mode": "COMPLIANCE", "days": 1}})
    assert [f.property for f in locked.failures] == ["objectLock"]
    live.delete("p1-datasets", props)
    assert live.read("p1-datasets", props).id is None


def test_a_provider_without_credentials_names_the_config_key(gateway, tmp_path):
    provider = BucketProvider()
    root = project(tmp_path, gateway, "p2")
    (desired,) = [d for d in spec.site_specs(lab_stack(root).site) if d["bucket"] == "p2-datasets"]
    with pytest.raises(s3.StoreError, match="config aifactory:objectStoreCredentials is not set"):
        provider.create(desired)
    assert credentials_from_config({"access_key_id": "A", "secret_access_key": {"secure": "v1:x"}}) is None


def test_policy_is_built_as_data_not_text():
    stack = load_stack(ROOT, "za")
    evidence_bucket = stack.site.storage.object_store.evidence
    assert evidence_bucket is not None
    doc = json.loads(spec.bucket_spec(stack.site, evidence_bucket)["policy"])
    sids = [s["Sid"] for s in doc["Statement"]]
    assert sids == ["TlsOnly", "NoDeletes"]  # za serves https: TLS only is part of its policy
    lab = load_stack(ROOT, "lab")
    assert "TlsOnly" not in (spec.bucket_spec(lab.site, lab.site.storage.object_store.buckets[1])["policy"] or "")


def test_secrets_never_reach_a_repr():
    assert OWNER.secret_access_key not in repr(OWNER)
    stack = load_stack(ROOT, "lab")
    assert stack.s3_credential is not None
    assert stack.s3_credential.secret_ciphertext not in repr(stack)


def test_the_audit_shows_the_live_store_beside_the_declaration(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "a1")
    out_dir = tmp_path / "audit"
    assert run(capsys, root, "audit", "lab", "--out", str(out_dir), "--live-store")[0] == 0
    (md,) = out_dir.glob("*.md")
    text = md.read_text()
    assert "| `a1-evidence` | evidence | lab, versioning on, lock COMPLIANCE 30 d | MISSING |" in text
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    assert run(capsys, root, "audit", "lab", "--out", str(out_dir), "--live-store")[0] == 0
    text = md.read_text()
    assert (
        "| `a1-evidence` | evidence | lab, versioning on, lock COMPLIANCE 30 d | lab, versioning on, lock COMPLIANCE 30 d |"
        in text
    )
    assert "The store was read when this report was written" in text


def test_the_program_declares_each_bucket_as_a_dynamic_resource_without_keys():
    from aifactory.plan import render_json, run_plan

    stack = load_stack(ROOT, "lab")
    plan = run_plan(stack)
    created = plan.of_type("pulumi-python:dynamic/aifactory:S3Bucket")
    assert sorted(r.inputs["bucket"] for r in created) == ["lab-ci", "lab-datasets", "lab-evidence", "lab-research"]
    declared = {d["bucket"]: d for d in spec.site_specs(stack.site)}
    for r in created:
        assert plan.parent_key(r) == f"aifactory:storage:Bucket::bucket-{r.inputs['bucket']}"
        # Pulumi drops None inputs; everything else is the spec, and nothing but the spec.
        assert r.inputs == {k: v for k, v in declared[r.inputs["bucket"]].items() if v is not None}
    assert stack.s3_credential is not None
    assert stack.s3_credential.access_key_id not in render_json(plan)


# -- tenants: each bucket its tenant's alone, refused to every other by the store itself ---------


def _tenant_user(gateway: rgw.Gateway, prefix: str, name: str) -> s3.Credentials:
    """The tenant's store user, as project() names it (PREFIX-TENANT), with keys of its own."""
    creds = s3.Credentials(f"T{prefix.upper()}{name.upper()}KEY01", f"{prefix}-{name}-secret-0001")
    rgw.add_user(gateway.directory, rgw.User(f"{prefix}-{name}", creds.access_key_id, creds.secret_access_key))
    return creds


def _verbs(client: Any, bucket: str) -> dict[str, Any]:
    """Every S3 verb that matters to a tenant's data and its bucket, against ``bucket``."""
    return {
        "GetObject": lambda: client.get_object(Bucket=bucket, Key="shard-0"),
        "HeadObject": lambda: client.head_object(Bucket=bucket, Key="shard-0"),
        "PutObject": lambda: client.put_object(Bucket=bucket, Key="planted", Body=b"x"),
        "DeleteObject": lambda: client.delete_object(Bucket=bucket, Key="shard-0"),
        "ListObjectsV2": lambda: client.list_objects_v2(Bucket=bucket),
        "ListObjectVersions": lambda: client.list_object_versions(Bucket=bucket),
        "GetBucketPolicy": lambda: client.get_bucket_policy(Bucket=bucket),
        "PutBucketPolicy": lambda: client.put_bucket_policy(Bucket=bucket, Policy='{"Version":"2012-10-17","Statement":[]}'),
        "DeleteBucketPolicy": lambda: client.delete_bucket_policy(Bucket=bucket),
        "PutBucketAcl": lambda: client.put_bucket_acl(Bucket=bucket, ACL="public-read"),
        "PutBucketVersioning": lambda: client.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}
        ),
        "DeleteBucket": lambda: client.delete_bucket(Bucket=bucket),
    }


def _refused(call) -> str:
    """AccessDenied, or what else the store answered (a HEAD's refusal has no body: its status, 403)."""
    try:
        call()
    except ClientError as exc:
        code = str(exc.response["Error"]["Code"])
        return "AccessDenied" if code == "403" else code
    return "ALLOWED"


def test_a_tenants_credentials_are_refused_by_the_store_on_another_tenants_bucket(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "q1", tenants=True)
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    research, ci = _tenant_user(gateway, "q1", "research"), _tenant_user(gateway, "q1", "ci")
    mine = raw_client(gateway.endpoint, research)
    # Its own bucket: its data, read, written, listed and deleted by its own user.
    mine.put_object(Bucket="q1-research", Key="shard-0", Body=b"genomes")
    assert mine.get_object(Bucket="q1-research", Key="shard-0")["Body"].read() == b"genomes"
    assert [o["Key"] for o in mine.list_objects_v2(Bucket="q1-research")["Contents"]] == ["shard-0"]
    raw_client(gateway.endpoint, ci).put_object(Bucket="q1-ci", Key="shard-0", Body=b"builds")
    # Every other user: refused by the store on every verb, the site's own principal included.
    for intruder, bucket in ((research, "q1-ci"), (ci, "q1-research"), (TRAINING, "q1-research"), (INTRUDER, "q1-ci")):
        answers = {verb: _refused(call) for verb, call in _verbs(raw_client(gateway.endpoint, intruder), bucket).items()}
        assert set(answers.values()) == {"AccessDenied"}, (intruder.access_key_id, bucket, answers)
    # Nor may the tenant change its own bucket's rules: only its data is its own.
    own = {v: _refused(c) for v, c in _verbs(mine, "q1-research").items() if v.endswith(("Policy", "Acl", "Bucket"))}
    assert set(own.values()) == {"AccessDenied"}, own
    # The store shows each bucket's policy: the tenant's principal, and no one else.
    doc = json.loads(raw_client(gateway.endpoint, owner("q1")).get_bucket_policy(Bucket="q1-research")["Policy"])
    assert [s["Principal"]["AWS"] for s in doc["Statement"] if s["Effect"] == "Allow"] in (
        [["arn:aws:iam:::user/q1-research"]],
        ["arn:aws:iam:::user/q1-research"],
    )
    code, out, _ = run(capsys, root, "storage", "check", "lab")
    assert code == 0, out


def test_a_bucket_policy_granting_another_principal_is_caught_by_the_store_test(gateway, tmp_path, capsys, monkeypatch):
    """The planted fault: the spec grants tenant ci's bucket to research too; the store then lets research in,
    so the cross-tenant test above would fail. The denial comes from the policy, not from chance."""
    original = spec.policy

    def leaky(store, bucket, tenant=None):
        doc = original(store, bucket, tenant)
        if doc and tenant == "q2-ci":
            doc["Statement"][-1]["Principal"]["AWS"].append(spec.principal_arn("q2-research"))
        return doc

    monkeypatch.setattr(spec, "policy", leaky)
    root = project(tmp_path, gateway, "q2", tenants=True)
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    research, ci = _tenant_user(gateway, "q2", "research"), _tenant_user(gateway, "q2", "ci")
    raw_client(gateway.endpoint, ci).put_object(Bucket="q2-ci", Key="shard-0", Body=b"builds")
    assert raw_client(gateway.endpoint, research).get_object(Bucket="q2-ci", Key="shard-0")["Body"].read() == b"builds"


def test_the_audit_answers_who_may_read_each_tenants_bucket_from_the_live_store(gateway, tmp_path, capsys):
    root = project(tmp_path, gateway, "a2", tenants=True)
    assert run(capsys, root, "storage", "apply", "lab")[0] == 0
    out_dir = tmp_path / "audit"
    assert run(capsys, root, "audit", "lab", "--out", str(out_dir), "--live-store")[0] == 0
    text = (out_dir / "audit-lab.md").read_text()
    row = "| `research` | `a2-research` | arn:aws:iam:::user/a2\\-research (and the site's owner account) |"
    assert f"{row} grants arn:aws:iam:::user/a2\\-research |" in text, text[text.index("## Tenants") :][:2000]
    # A grant the program did not set, planted on the store by hand, is shown as what it is.
    raw = raw_client(gateway.endpoint, owner("a2"))
    doc = json.loads(raw.get_bucket_policy(Bucket="a2-ci")["Policy"])
    grant = doc["Statement"][-1]["Principal"]
    who = grant["AWS"] if isinstance(grant["AWS"], list) else [grant["AWS"]]
    grant["AWS"] = [*who, "arn:aws:iam:::user/intruder"]
    raw.put_bucket_policy(Bucket="a2-ci", Policy=json.dumps(doc))
    assert run(capsys, root, "audit", "lab", "--out", str(out_dir), "--live-store")[0] == 0
    text = (out_dir / "audit-lab.md").read_text()
    assert "DIFFERENT: grants arn:aws:iam:::user/a2\\-ci, arn:aws:iam:::user/intruder" in text
