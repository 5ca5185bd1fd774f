"""`aifactory rollout` without test hosts: the order, the record, resume's rules, and cordon and drain.

Cordon and drain are exercised against a small server that answers the Kubernetes API calls the
rollout makes (Node read and patch, Pod list, the Eviction subresource, 429 while a
PodDisruptionBudget holds), through the real `kubernetes` client and a real kubeconfig: no API
server can be installed on these machines. The four-host rollout itself is tests/test_rollout_hosts.py.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from aifactory.rollout import cluster, engine, record
from aifactory.rollout.order import Batch, BatchSize, batch_size, order
from aifactory.stackfile import load_stack

from .conftest import ROOT

# -- order ---------------------------------------------------------------------------------


def test_canary_takes_the_first_nodes_of_every_pool_then_batches_follow_site_order():
    site = load_stack(ROOT, "ma").site  # three pools: 16 h100a, 8 b200a, 36 gb200a
    nodes = list(site.nodes)
    batches = order(nodes, 1, BatchSize(5, False))
    first_of = {p.name: next(n.hostname for n in nodes if n.pool == p.name) for p in site.pools}
    assert batches[0].kind == "canary" and list(batches[0].nodes) == list(first_of.values())
    rest = [h for b in batches[1:] for h in b.nodes]
    assert rest == [n.hostname for n in nodes if n.hostname not in first_of.values()]
    assert [len(b.nodes) for b in batches[1:]] == [5] * 11 + [2]
    assert [b.index for b in batches] == list(range(13))
    assert [b.name for b in batches[:2]] == ["canary", "batch 1"]


def test_percent_batches_round_up_and_no_canary_starts_at_batch_one():
    nodes = list(load_stack(ROOT, "ng").site.nodes)  # 8 nodes
    batches = order(nodes, 0, batch_size("25%"))
    assert [b.kind for b in batches] == ["batch"] * 4 and [b.index for b in batches] == [1, 2, 3, 4]
    assert [len(b.nodes) for b in order(nodes, 2, batch_size("10%"))] == [2, 1, 1, 1, 1, 1, 1]
    assert order([], 1, batch_size("1")) == []


def test_an_nvlink_domain_is_never_split_between_batches():
    """Half a rack's IMEX domain out of service is all of it degraded: a domain's nodes go in one batch."""
    site = load_stack(ROOT, "ma").site
    nodes = [n for n in site.nodes if n.pool == "h100a"]  # 16 nodes; play four racks of four as domains

    def domain(n):
        return f"r{(n.index - 1) // 4}"

    batches = order(nodes, 1, BatchSize(3, False), domain)
    assert [len(b.nodes) for b in batches] == [4, 4, 4, 4]  # the canary takes the first domain whole
    by_domain: dict[str, set[int]] = {}
    for b in batches:
        for h in b.nodes:
            by_domain.setdefault(domain(next(n for n in nodes if n.hostname == h)), set()).add(b.index)
    assert all(len(indexes) == 1 for indexes in by_domain.values())
    # Domains smaller than a batch share one; a domain never straddles two.
    mixed = order(nodes, 0, BatchSize(6, False), lambda n: domain(n) if n.index <= 8 else None)
    assert [len(b.nodes) for b in mixed] == [4, 6, 6]
    assert set(mixed[0].nodes) == {n.hostname for n in nodes[:4]}
    # Without domains the order is what it always was.
    assert order(nodes, 1, BatchSize(5, False)) == order(nodes, 1, BatchSize(5, False), lambda _n: None)


def _refused(capsys, *args: str) -> str:
    from aifactory.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["rollout", "lab", *args, "--dry-run"])
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "101%", "abc", "-1", "2.5", "1e3", "5 %", "0%", "1234567"])
def test_bad_batch_sizes_are_refused_by_name(capsys, bad):
    assert "argument --batch" in _refused(capsys, "--batch", bad)


@pytest.mark.parametrize("flag", ["--canary", "--max-failures"])
def test_bad_counts_are_refused_by_name(capsys, flag):
    assert f"argument {flag}" in _refused(capsys, flag, "-1")


# -- record and resume ---------------------------------------------------------------------


def _rollout(stack, root, **kw) -> record.Rollout:
    base = dict(
        id=record.new_id(root, stack.name),
        site=stack.name,
        stack_file="stacks/Pulumi.lab.yaml",
        declared=engine.declared(stack, root),
        options={"canary": 1, "batch": "2", "max_failures": 0, "limit": None},
        plan=[Batch(index=0, kind="canary", nodes=("lab-gpu-01",)), Batch(index=1, kind="batch", nodes=("lab-gpu-02",))],
        differences={"lab-gpu-01": {"would_change": ["t"], "versions": {"nccl": "2.20.5"}}},
    )
    return record.Rollout(**{**base, **kw})


def test_record_round_trips_and_the_latest_is_found(lab):
    stack = load_stack(lab, "lab")
    r = _rollout(stack, lab)
    r.batches.append(
        record.BatchRecord(
            index=0,
            kind="canary",
            nodes=["lab-gpu-01"],
            started=record.now(),
            ended=record.now(),
            outcomes={"lab-gpu-01": record.NodeOutcome(failed=True)},
            failures=["lab-gpu-01"],
        )
    )
    record.save(lab, r)
    back = record.latest(lab, "lab")
    assert back == r
    assert record.new_id(lab, "lab") != r.id
    path = record.path_of(lab, r)
    path.write_text(path.read_text().replace('"format": 1', '"format": 99'))
    with pytest.raises(Exception, match=r"rollout.json: format: .*\(got 99\)"):
        record.latest(lab, "lab")


def test_a_second_rollout_of_a_site_is_refused_while_one_runs(lab):
    from aifactory.errors import OperationError

    with (
        record.locked(lab, "lab"),
        pytest.raises(OperationError, match="another rollout of lab"),
        record.locked(lab, "lab"),
    ):
        pass


def test_a_stopped_rollout_must_be_resumed_or_restarted(lab, cli):
    stack = load_stack(lab, "lab")
    record.save(lab, _rollout(stack, lab, status=record.STOPPED, reason="batch 1: 1 failure(s)"))
    code, _, err = cli("rollout", "lab", root=lab)
    assert code == 2 and "--resume" in err and "--restart" in err and "batch 1: 1 failure(s)" in err


def test_resume_refuses_a_changed_stack_and_says_how_to_start_over(lab, cli):
    stack = load_stack(lab, "lab")
    record.save(lab, _rollout(stack, lab, status=record.STOPPED))
    path = lab / "stacks" / "Pulumi.lab.yaml"
    path.write_text(path.read_text().replace("nccl: 2.21.5-1+cuda11.0", "nccl: 2.20.5-1+cuda11.0"))
    code, _, err = cli("rollout", "lab", "--resume", root=lab)
    assert code == 2 and "changed since rollout" in err and "nccl" in err and "--restart" in err


def test_resume_without_a_rollout_and_of_a_completed_one(lab, cli):
    code, _, err = cli("rollout", "lab", "--resume", root=lab)
    assert code == 2 and "no rollout to resume" in err
    stack = load_stack(lab, "lab")
    record.save(lab, _rollout(stack, lab, status=record.COMPLETED, ended=record.now()))
    code, out, _ = cli("rollout", "lab", "--resume", root=lab)
    assert code == 0 and "nothing to resume" in out
    code, out, _ = cli("rollout", "lab", "--status", root=lab)
    assert code == 0 and "completed" in out and "canary" in out and "not started" in out


# -- the loop, with the nodes' side replaced -------------------------------------------------


class _Service:
    skipped = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def take_out(self, node: str) -> str:
        self.calls.append(("out", node))
        return "cordoned; drained: 0 pod(s) evicted"

    def put_back(self, node: str) -> str:
        self.calls.append(("back", node))
        return "uncordoned"


def _fake_nodes(monkeypatch, failing: set[str]):
    from aifactory.bootstrap import HostSummary, RunResult
    from aifactory.verify.runner import CheckResult, NodeResult

    converged: list[list[str]] = []

    def playbook(stack, root, *, limit=None, **_kw):
        hosts = limit.split(",")
        converged.append(hosts)
        res = RunResult("successful", 0, root, hosts={h: HostSummary(ok=3, changed=2) for h in hosts})
        return res

    def verify(stack, root, limit=None, **_kw):
        return [
            NodeResult(n, {"nccl_version": CheckResult("FAIL" if n.hostname in failing else "pass", "NCCL is 2.20.5")})
            for n in stack.site.nodes
            if n.hostname in limit.split(",")
        ]

    monkeypatch.setattr(engine, "run_playbook", playbook)
    monkeypatch.setattr(engine.runner, "run", verify)
    monkeypatch.setattr(engine, "versions", lambda t, nodes: {n.hostname: {"nccl": "2.21.5"} for n in nodes})
    return converged


def test_a_failed_node_stays_out_of_service_and_the_rollout_goes_on_within_max_failures(lab, monkeypatch):
    stack = load_stack(lab, "lab")
    converged = _fake_nodes(monkeypatch, failing={"lab-gpu-01"})
    service = _Service()
    r = _rollout(stack, lab, options={"canary": 1, "batch": "1", "max_failures": 1, "limit": None})
    lines: list[str] = []
    # Completed, but not clean: exit 1, and the failed node is named as out of service.
    assert engine.execute(engine.Target(stack, lab, say=lines.append), r, service) == 1
    assert converged == [["lab-gpu-01"], ["lab-gpu-02"]]
    assert "FAILED: 1 node(s) failed within --max-failures and stay out of service: lab-gpu-01" in "\n".join(lines)
    assert ("back", "lab-gpu-01") not in service.calls and ("back", "lab-gpu-02") in service.calls
    assert r.status == record.COMPLETED and r.batches[0].failures == ["lab-gpu-01"] and r.batches[0].passed
    assert r.batches[0].outcomes["lab-gpu-01"].back_in_service == "left cordoned: the node failed this batch"
    assert "NCCL is 2.20.5" in r.batches[0].outcomes["lab-gpu-01"].verify


def test_a_batch_over_max_failures_stops_and_leaves_later_batches_untouched(lab, monkeypatch):
    stack = load_stack(lab, "lab")
    converged = _fake_nodes(monkeypatch, failing={"lab-gpu-01"})
    service = _Service()
    r = _rollout(stack, lab)
    lines: list[str] = []
    assert engine.execute(engine.Target(stack, lab, say=lines.append), r, service) == 1
    assert converged == [["lab-gpu-01"]] and ("out", "lab-gpu-02") not in service.calls
    assert r.status == record.STOPPED and r.next_batch == 0
    text = "\n".join(lines)
    assert "STOPPED: canary: 1 failure(s), more than --max-failures 0 (lab-gpu-01)" in text
    assert "untouched: lab-gpu-02" in text and "--resume" in text
    saved = record.latest(lab, "lab")
    assert saved is not None and saved.status == record.STOPPED
    batch_file = record.path_of(lab, r).with_name(f"rollout-{r.id}-batch-0-try-1.json")
    assert json.loads(batch_file.read_text())["failures"] == ["lab-gpu-01"]


def test_a_batch_is_drained_side_by_side(lab, monkeypatch):
    """Every node of a batch waits at one barrier inside its drain: drained one after another, it breaks."""
    stack = load_stack(lab, "lab")
    _fake_nodes(monkeypatch, failing=set())
    barrier = threading.Barrier(2, timeout=10)

    class Waiting(_Service):
        def take_out(self, node: str) -> str:
            barrier.wait()
            return super().take_out(node)

    r = _rollout(stack, lab, plan=[Batch(index=1, kind="batch", nodes=("lab-gpu-01", "lab-gpu-02"))])
    assert engine.execute(engine.Target(stack, lab, say=lambda _m: None), r, Waiting()) == 0
    assert r.batches[0].outcomes["lab-gpu-02"].out_of_service.startswith("cordoned")


def test_a_node_that_cannot_be_drained_is_not_converged(lab, monkeypatch):
    stack = load_stack(lab, "lab")
    converged = _fake_nodes(monkeypatch, failing=set())

    class Stuck(_Service):
        def take_out(self, node: str) -> str:
            raise cluster.DrainError("drain timed out after 1 s with 1 pod(s) left (PodDisruptionBudget): a/b")

    r = _rollout(stack, lab)
    assert engine.execute(engine.Target(stack, lab, say=lambda _m: None), r, Stuck()) == 1
    assert converged == []
    o = r.batches[0].outcomes["lab-gpu-01"]
    assert o.out_of_service.startswith("FAILED: drain timed out") and o.converge.startswith("not run")


# -- cordon and drain through the Kubernetes API ---------------------------------------------


class FakeApi:
    """Just enough of the Kubernetes API for cordon, eviction and uncordon, with a PDB that holds N times."""

    def __init__(self) -> None:
        self.nodes = {"n1": False, "n2": True}  # name -> spec.unschedulable
        self.pods = {
            ("default", "web-1"): {"node": "n1", "owner": "ReplicaSet"},
            ("ml", "train-0"): {"node": "n1", "owner": "StatefulSet"},  # under a PDB
            ("gpu-operator", "nvidia-driver-daemonset-x"): {"node": "n1", "owner": "DaemonSet"},
            ("kube-system", "etcd-n1"): {"node": "n1", "owner": "Node", "mirror": True},
        }
        self.pdb_holds = {("ml", "train-0"): 2}
        self.log: list[str] = []

    def node(self, name: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {"unschedulable": self.nodes[name]},
        }

    def pod_list(self, node: str) -> dict:
        items = []
        for (ns, name), p in self.pods.items():
            if p["node"] != node:
                continue
            meta = {
                "name": name,
                "namespace": ns,
                "ownerReferences": [{"apiVersion": "v1", "kind": p["owner"], "name": "o", "uid": "u"}],
            }
            if p.get("mirror"):
                meta["annotations"] = {"kubernetes.io/config.mirror": "x"}
            items.append(
                {"metadata": meta, "spec": {"nodeName": node, "containers": []}, "status": {"phase": "Running"}}
            )
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}


def _serve(api: FakeApi):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_a) -> None:
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if parts[:3] == ["api", "v1", "nodes"] and parts[3] in api.nodes:
                self._send(200, api.node(parts[3]))
            elif url.path == "/api/v1/pods":
                selector = parse_qs(url.query)["fieldSelector"][0]
                self._send(200, api.pod_list(selector.removeprefix("spec.nodeName=")))
            else:
                self._send(404, {"kind": "Status", "code": 404})

        def do_PATCH(self) -> None:
            parts = self.path.strip("/").split("/")
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            api.nodes[parts[3]] = body["spec"]["unschedulable"]
            api.log.append(f"patch {parts[3]} unschedulable={body['spec']['unschedulable']}")
            self._send(200, api.node(parts[3]))

        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")  # api v1 namespaces NS pods NAME eviction
            key = (parts[3], parts[5])
            self.rfile.read(int(self.headers["Content-Length"]))
            if api.pdb_holds.get(key, 0) > 0:
                api.pdb_holds[key] -= 1
                api.log.append(f"429 {key[0]}/{key[1]}")
                self._send(429, {"kind": "Status", "code": 429, "reason": "TooManyRequests"})
                return
            api.pods.pop(key, None)
            api.log.append(f"evict {key[0]}/{key[1]}")
            self._send(201, {"kind": "Status", "code": 201})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def kube(tmp_path, monkeypatch):
    api = FakeApi()
    server = _serve(api)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "aifactory-za-jnb1", "context": {"cluster": "c", "user": "u"}},
            {"name": "other", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": "other",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setattr(cluster, "RETRY_SECONDS", 0.05)
    yield api, str(path)
    server.shutdown()


# Cordon, eviction through a real PodDisruptionBudget, an operator's cordon, a budget that never
# allows and an unknown Node run against the real API server (tests/test_drain_real.py). The
# stand-in stays for what needs a kubelet to exist (static mirror pods), the DaemonSet filter, and
# faults on demand.
def test_drain_cordons_evicts_through_pdbs_and_uncordons(kube):
    api, path = kube
    c = cluster.Cluster.for_context("aifactory-za-jnb1", timeout=30, say=lambda _m: None, config_file=path)
    said = c.take_out("n1")
    assert api.nodes["n1"] is True and said == "cordoned; drained: 2 pod(s) evicted"
    assert api.log.count("429 ml/train-0") == 2 and "evict ml/train-0" in api.log and "evict default/web-1" in api.log
    # DaemonSet pods (the GPU operator's among them) and static pods stay, as kubectl drain leaves them.
    assert ("gpu-operator", "nvidia-driver-daemonset-x") in api.pods and ("kube-system", "etcd-n1") in api.pods
    assert c.put_back("n1") == "uncordoned" and api.nodes["n1"] is False


def test_an_unreachable_api_server_fails_the_drain_not_the_program(tmp_path):
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],  # discard: nothing listens
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "aifactory-za-jnb1", "context": {"cluster": "c", "user": "u"}}],
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    c = cluster.Cluster.for_context(
        "aifactory-za-jnb1", timeout=5, say=lambda _m: None, config_file=str(tmp_path / "kubeconfig")
    )
    with pytest.raises(cluster.DrainError, match="Kubernetes API"):
        c.take_out("n1")


def test_an_unknown_context_and_a_malformed_kubeconfig_are_one_clear_error(kube):
    from aifactory.errors import ConfigError

    _, path = kube
    with pytest.raises(ConfigError, match="no context 'aifactory-xx'"):
        cluster.Cluster.for_context("aifactory-xx", timeout=1, config_file=path)
    Path(path).write_text("clusters: [unclosed")
    with pytest.raises(ConfigError, match=r"kubeconfig .*: not a kubeconfig"):
        cluster.Cluster.for_context("aifactory-za-jnb1", timeout=1, config_file=path)


def test_the_lab_skips_cordon_and_drain_with_its_reason():
    service = cluster.for_site(load_stack(ROOT, "lab").site, 600)
    assert service.skipped and "kubernetes.nodes_joined: false" in service.skipped
    assert service.take_out("lab-gpu-01").startswith("SKIPPED: ")
    assert cluster.skip_reason(load_stack(ROOT, "za").site) is None


@pytest.mark.parametrize(
    "args", [("--resume", "--batch", "2"), ("--status", "--limit", "lab-gpu-01"), ("--resume", "--canary", "0")]
)
def test_resume_and_status_refuse_options_that_choose_nodes(cli, args):
    code, _, err = cli("rollout", "lab", *args)
    assert code == 2 and args[1] in err and "new rollout" in err


def test_whose_cordon_it_is_is_saved_before_the_converge(lab, kube, monkeypatch):
    """A rollout killed mid-batch: the record already says it cordoned the node, so a resume uncordons it."""
    api, path = kube
    stack = load_stack(lab, "lab")
    api.nodes.update({"lab-gpu-01": False, "lab-gpu-02": False})
    c = cluster.Cluster.for_context("aifactory-za-jnb1", timeout=5, say=lambda _m: None, config_file=path)
    monkeypatch.setattr(engine, "versions", lambda t, nodes: {n.hostname: {} for n in nodes})

    def killed(*_a, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "run_playbook", killed)
    r = _rollout(stack, lab)
    record.save(lab, r)
    with pytest.raises(KeyboardInterrupt):
        engine.execute(engine.Target(stack, lab, say=lambda _m: None), r, c)
    saved = record.latest(lab, "lab")
    assert saved is not None and saved.cordoned_by_rollout == ["lab-gpu-01"] and api.nodes["lab-gpu-01"] is True
    resumed = cluster.Cluster.for_context("aifactory-za-jnb1", timeout=5, say=lambda _m: None, config_file=path)
    _fake_nodes(monkeypatch, failing=set())
    assert engine.execute(engine.Target(stack, lab, say=lambda _m: None), saved, resumed) == 0
    assert api.nodes["lab-gpu-01"] is False and saved.cordoned_by_rollout == []


def test_a_large_site_prints_alike_nodes_once_and_long_batches_shortened():
    stack = load_stack(ROOT, "za")  # 32 nodes
    nodes = list(stack.site.nodes)
    old = {"would_change": ["nccl : Fetch"], "versions": {"nccl": "2.20.5"}}
    odd = {"would_change": ["nvidia_driver : Install"], "versions": {"nccl": "2.21.5"}}
    found = engine.Discovery(nodes, nodes, {n.hostname: (odd if i == 5 else old) for i, n in enumerate(nodes)})
    lines: list[str] = []
    batches = order(nodes, 1, batch_size("50%"))
    engine.print_plan(
        engine.Target(stack, ROOT, say=lines.append),
        record.Declared(driver="d", cuda="c", nccl="n", inventory_sha256="0" * 64),
        found,
        batches,
        engine.Options(),
        service="cordon, then drain",
    )
    text = "\n".join(lines)
    assert text.count("would change: nccl : Fetch") == 1 and text.count("would change: nvidia_driver : Install") == 1
    assert "(31 nodes): installed nccl 2.20.5" in text and f"{nodes[5].hostname}: installed nccl 2.21.5" in text
    assert "(16 nodes)" in text and "(15 nodes)" in text  # batch lines: their ends and the count
    assert len(lines) < 15
