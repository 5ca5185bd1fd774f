"""Day-two guarantees that are not a single refusal: what pruning keeps, how long a silent endpoint
can hold a command, what a killed rollout leaves, and which processes `down` may signal.

The silent endpoints are stand-ins on purpose: a socket that accepts connections and never answers
is the fault on demand that no real S3 store or API server can be asked to produce.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from aifactory import bootstrap
from aifactory.fsutil import write_atomic
from aifactory.rollout import cluster, engine, record
from aifactory.stackfile import load_stack
from aifactory.storage import s3

from .test_rollout import _fake_nodes, _rollout, _Service


class Silent:
    """Accepts every connection and never answers a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture
def silent():
    s = Silent()
    yield s
    s.close()


# -- pruning ---------------------------------------------------------------------------------


def test_pruning_keeps_the_newest_runs_and_never_touches_evidence_or_rollouts(tmp_path):
    root = tmp_path
    runs = root / "runs" / "lab"
    for i in range(25):
        (runs / f"202601{i + 1:02d}T000000-{100 + i}").mkdir(parents=True)
    evidence = [runs / f"202601{i + 1:02d}T000000-evidence" for i in range(3)]
    for d in evidence:
        d.mkdir()
        (d / "verify.json").write_text("{}")
    (runs / "rollouts" / "20260101T000000").mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    (runs / "20250101T000000-1").symlink_to(target)  # named like a run, oldest of all: a link, never followed
    bootstrap.prune_runs(root, "lab", keep=20)
    left = sorted(p.name for p in runs.iterdir())
    kept_runs = [n for n in left if bootstrap.RUN_DIR.fullmatch(n) and not (runs / n).is_symlink()]
    assert kept_runs == [f"202601{i + 1:02d}T000000-{100 + i}" for i in range(5, 25)]
    assert all(d.is_dir() and (d / "verify.json").is_file() for d in evidence)
    assert (runs / "rollouts" / "20260101T000000").is_dir()
    assert (target / "keep.txt").read_text() == "keep" and (runs / "20250101T000000-1").is_symlink()


# -- deadlines -------------------------------------------------------------------------------


def test_a_silent_store_fails_a_whole_command_within_one_requests_bound(silent, monkeypatch):
    monkeypatch.setattr(s3, "CONNECT_TIMEOUT", 1.0)
    monkeypatch.setattr(s3, "READ_TIMEOUT", 1.0)
    client = s3.client(f"http://127.0.0.1:{silent.port}", "lab", s3.Credentials("a", "b"))
    start = time.monotonic()
    errors = []
    for bucket in ("b1", "b2", "b3", "b4"):  # a storage check makes several calls per bucket
        for op in (client.head_bucket, client.get_bucket_versioning):
            with pytest.raises(s3.StoreError) as exc:
                s3.call(f"bucket {bucket}", op, Bucket=bucket)
            errors.append(str(exc.value))
    elapsed = time.monotonic() - start
    assert elapsed < s3.bound_seconds() + 3, elapsed  # one call's attempts, not eight calls' worth
    assert "did not answer within 1 s to connect or 1 s to respond (5 attempts)" in errors[0]
    assert all("did not answer earlier in this command" in e for e in errors[1:])
    assert len(silent.accepted) <= s3.ATTEMPTS


def test_a_silent_api_server_stops_the_rollout_cleanly_with_its_record_whole(lab, silent, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "API_TIMEOUT", (1.0, 1.0))
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{silent.port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "aifactory-lab", "context": {"cluster": "c", "user": "u"}}],
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    c = cluster.Cluster.for_context("aifactory-lab", timeout=600, say=lambda _m: None, config_file=str(tmp_path / "kubeconfig"))
    converged = _fake_nodes(monkeypatch, failing=set())
    stack = load_stack(lab, "lab")
    r = _rollout(stack, lab)
    record.save(lab, r)
    start = time.monotonic()
    assert engine.execute(engine.Target(stack, lab, say=lambda _m: None), r, c) == 1
    assert time.monotonic() - start < 20  # not --drain-timeout's 600 s: each request is bounded
    assert converged == []  # a node that could not be taken out is never converged
    saved = record.latest(lab, "lab", stack.site)
    assert saved is not None and saved.status == record.STOPPED and saved.next_batch == 0
    out = saved.batches[0].outcomes["lab-gpu-01"].out_of_service
    assert out.startswith("FAILED: Kubernetes API: no answer within 1 s") and "(read Node lab-gpu-01)" in out


# -- crash consistency -----------------------------------------------------------------------


class Killed(BaseException):
    """What SIGKILL would do to the process at that point: nothing after it runs."""


def _saves(lab: Path, monkeypatch) -> int:
    calls = 0
    real = record.save

    def counting(root, rollout):
        nonlocal calls
        calls += 1
        return real(root, rollout)

    monkeypatch.setattr(record, "save", counting)
    stack = load_stack(lab, "lab")
    r = _rollout(stack, lab)
    record.save(lab, r)
    assert engine.execute(engine.Target(stack, lab, say=lambda _m: None), r, _Service()) == 0
    monkeypatch.setattr(record, "save", real)
    return calls


@pytest.mark.parametrize("where", ["before the write", "between the temporary file and the rename"])
def test_a_rollout_killed_at_any_save_leaves_a_record_that_status_reads_and_resume_completes(lab, monkeypatch, where):
    _fake_nodes(monkeypatch, failing=set())
    total = _saves(lab, monkeypatch)
    assert total >= 4  # the record made, each batch, the end
    stack = load_stack(lab, "lab")
    for k in range(2, total + 1):  # the first save is the one that creates the record
        for old in (lab / "runs" / "lab" / "rollouts").iterdir():
            if old.is_dir():
                import shutil

                shutil.rmtree(old)
        real_save, real_replace = record.save, os.replace
        count = 0

        def dying(root, rollout, real_save=real_save, k=k, real_replace=real_replace):
            nonlocal count
            count += 1
            if count == k:
                if where == "before the write":
                    raise Killed
                monkeypatch.setattr(os, "replace", _die_once(real_replace, monkeypatch))
            return real_save(root, rollout)

        monkeypatch.setattr(record, "save", dying)
        r = _rollout(stack, lab)
        with pytest.raises(Killed):
            record.save(lab, r)
            engine.execute(engine.Target(stack, lab, say=lambda _m: None), r, _Service())
            raise Killed  # the kill came after the last save: the record is the completed one
        monkeypatch.setattr(record, "save", real_save)
        monkeypatch.setattr(os, "replace", real_replace)
        saved = record.latest(lab, "lab", stack.site)  # parses and checks whole against the stack
        assert saved is not None, k
        assert engine.status_text(lab, saved).startswith(f"rollout {saved.id} of lab"), k
        if saved.status in (record.RUNNING, record.STOPPED):
            assert engine.execute(engine.Target(stack, lab, say=lambda _m: None), saved, _Service()) == 0, k
        again = record.latest(lab, "lab", stack.site)
        assert again is not None and again.status == record.COMPLETED, (k, again.status if again else None)
        assert not [p for p in again and record.path_of(lab, again).parent.iterdir() if p.name.endswith(".tmp")]


def _die_once(real, monkeypatch):
    def replace(src, dst, *a, **kw):
        monkeypatch.setattr(os, "replace", real)
        raise Killed

    return replace


def test_the_atomic_writer_leaves_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    path = tmp_path / "rollout.json"
    write_atomic(path, "old", root=tmp_path)
    monkeypatch.setattr(os, "replace", lambda *a, **kw: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        write_atomic(path, "new", root=tmp_path)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["rollout.json"]


# -- test-host state ---------------------------------------------------------------------------


def test_down_never_signals_a_pid_a_state_file_names_unless_the_process_is_the_runs(tmp_path, monkeypatch):
    from aifactory.testhosts import lifecycle, rgw
    from aifactory.testhosts import run as run_mod

    monkeypatch.setattr(run_mod, "STATE_ROOT", tmp_path / "state")
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        r = run_mod.Run("0badc0de", "lab")
        r.dir.mkdir(parents=True)
        state = {
            "run": r.id,
            "site": "lab",
            "checkout": "/x",
            "gateway": "172.29.0.1",
            "prefix": 24,
            "hosts": [{"name": "lab-gpu-01", "ip": "172.29.0.11", "pid": sleeper.pid}],
            "relay_pid": sleeper.pid,
        }
        (r.state_file).write_text(json.dumps(state))
        r.rgw_dir.mkdir()
        gateway = {"pids": {"mon": sleeper.pid, "osd": sleeper.pid, "rgw": sleeper.pid}, "address": "127.0.0.1"}
        (r.rgw_dir / "gateway.json").write_text(json.dumps({**gateway, "port": 1, "region": "lab"}))
        lifecycle.down(r, say=lambda _m: None)
        assert sleeper.poll() is None, "down signalled a process that is not one of the run's"
        assert not rgw.stop(r.rgw_dir)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_report_at_a_symlink_replaces_the_link_and_never_writes_through_it(tmp_path):
    from aifactory.verify import runner

    target = tmp_path / "elsewhere.json"
    target.write_text("precious\n")
    link = tmp_path / "verify.json"
    link.symlink_to(target)
    runner.write_json([], "lab", link)
    runner.write_junit([], "lab", tmp_path / "verify.xml")
    assert target.read_text() == "precious\n"
    assert not link.is_symlink() and json.loads(link.read_text()) == {"nodes": {}, "site": "lab"}


def test_a_finished_record_is_history_and_never_blocks_the_next_rollout(lab):
    """A node removed from the stack after a completed rollout: the old record still reads."""
    from aifactory.errors import ConfigError
    from aifactory.rollout.order import Batch

    stack = load_stack(lab, "lab")
    gone = [Batch(index=0, kind="canary", nodes=("lab-gpu-09",))]
    record.save(lab, _rollout(stack, lab, plan=gone, differences={}, status=record.COMPLETED, ended=record.now()))
    assert record.latest(lab, "lab", stack.site).status == record.COMPLETED
    stopped = record.latest(lab, "lab")
    stopped.status = record.STOPPED
    record.save(lab, stopped)
    with pytest.raises(ConfigError, match="'lab-gpu-09' is not a node of lab"):
        record.latest(lab, "lab", stack.site)  # a resumable one is checked whole
