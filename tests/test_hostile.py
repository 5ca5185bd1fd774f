"""The day-two surfaces are untrusted input: a table of hostile cases, each refused cleanly.

Stack files have their own corpus (test_untrusted.py). This one plants what a person with write
access to a checkout, a machine's state folder or the environment could plant: files beside the
inventory that Ansible would load, symlinks under runs/, corrupted rollout records and test-host
state, hostile kubeconfigs, endless files, crafted arguments. For every case, run in a scratch copy
of the project through the real CLI:

- the exit status is 2 (bad input), or 1 where a run was started and failed;
- the first error line names the file, the field or the argument; no internal error, no traceback;
- a payload that would run a command if honoured (``touch MARKER``) did not: the marker is absent;
- nothing outside the project changed (the targets of the planted symlinks are compared byte for
  byte), nothing under runs/ changed for a refusal, and the recording S3 endpoint the stack names
  received no request: nothing was uploaded;
- it ended within its bound (an alarm fails the case otherwise): nothing blocks on a FIFO or
  reads an endless file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifactory import inventory
from aifactory.cli import main as cli_main
from aifactory.rollout import engine, record
from aifactory.rollout.order import Batch
from aifactory.stackfile import load_stack

from .conftest import ROOT

PAYLOAD = "touch {marker}"


@dataclass
class Scratch:
    """A copy of the project, a folder outside it that planted links point at, the marker, the recorder."""

    root: Path
    outside: Path
    marker: Path
    tmp: Path
    requests: list[str]

    def at(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, text: str | bytes) -> Path:
        path = self.at(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            for key, value in (("{marker}", self.marker), ("{outside}", self.outside), ("{root}", self.root)):
                text = text.replace(key, str(value))
            path.write_text(text)
        return path

    def link(self, rel: str, target: Path | str) -> Path:
        path = self.at(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target)
        return path

    def fifo(self, rel: str) -> Path:
        path = self.at(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        os.mkfifo(path)
        return path

    def stack(self, change: Callable[[dict[str, Any]], None], site: str = "lab", render: bool = True) -> None:
        """Change the scratch stack (its aifactory:site) and render its inventory anew, as an SRE would."""
        path = self.at(f"stacks/Pulumi.{site}.yaml")
        doc = yaml.safe_load(path.read_text())
        change(doc["config"]["aifactory:site"])
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        if render:
            inventory.write(load_stack(self.root, site), self.root)


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str]

    def log_message(self, *_a: object) -> None:
        pass

    def _any(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any


@pytest.fixture(scope="module")
def recorder():
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


@pytest.fixture
def scratch(tmp_path, recorder) -> Scratch:
    url, seen = recorder
    seen.clear()
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(ROOT / "ansible.cfg", root / "ansible.cfg")
    for name in ("stacks", "playbooks", "templates", "inventories"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "roles").symlink_to(ROOT / "roles")  # read only: no case plants anything in roles/
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text("root:$6$hash:19000:0:99999:7:::\n")
    (outside / "dir" / "kept.txt").write_text("kept\n")
    s = Scratch(root, outside, tmp_path / "MARKER", tmp_path, seen)

    def store(site: dict[str, Any]) -> None:  # the lab's store is the recorder: any upload would show
        site["jurisdiction"]["in_country"]["networks"].append("127.0.0.0/8")
        site["storage"]["object_store"]["url"] = url

    s.stack(store)
    return s


def _snapshot(base: Path, skip: Callable[[Path], bool] = lambda _p: False) -> dict[str, str]:
    out: dict[str, str] = {}
    if not base.exists():
        return out
    for here, dirs, files in os.walk(base, followlinks=False):
        for name in dirs + files:
            p = Path(here) / name
            if skip(p):
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[str(p)] = "link:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = f"mode:{stat.S_IFMT(st.st_mode)}"
    return out


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: str  # in the first error line ({root} is the scratch project)
    setup: Callable[[Scratch], None] = lambda _s: None
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)  # {root} {outside} {marker} {tmp} filled in
    stdin: bytes = b""
    root_arg: bool = True
    seconds: float = 20.0


# -- builders ------------------------------------------------------------------------------


def plant(rel: str, text: str) -> Callable[[Scratch], None]:
    return lambda s: s.write(rel, text) and None


def plant_link(rel: str, to: str) -> Callable[[Scratch], None]:
    """A symlink at ``rel`` to ``to`` ('OUT/...' is below the outside folder)."""
    return lambda s: s.link(rel, str(s.outside / to[4:]) if to.startswith("OUT/") else to) and None


def plant_fifo(rel: str) -> Callable[[Scratch], None]:
    return lambda s: s.fifo(rel) and None


def several(*steps: Callable[[Scratch], None]) -> Callable[[Scratch], None]:
    def run(s: Scratch) -> None:
        for step in steps:
            step(s)

    return run


SSH_ARGS = "ansible_ssh_common_args: '-o ProxyCommand=\"sh -c {{{{ \\'" + PAYLOAD + "\\' }}}}\"'\n"
# A file name that, split into words, is a config file that exists (cfg) and an option that runs a command.
CRAFTED = "cfg -oProxyCommand=touch${IFS}aifactory-MARKER"
SSH_TO_NOWHERE = "Host *\n  HostName 127.0.0.1\n  Port 9\n  ConnectTimeout 2\n"  # discard: refused at once
SHELL_VARS = f"ansible_ssh_common_args: -o ProxyCommand='{PAYLOAD}'\nansible_python_interpreter: '{PAYLOAD}'\n"


# A stopped rollout of the lab's two nodes, as the engine writes it; the record cases break it.
def _record(s: Scratch) -> dict[str, Any]:
    stack = load_stack(s.root, "lab")
    r = record.Rollout(
        id="20261201T120000",
        site="lab",
        stack_file="stacks/Pulumi.lab.yaml",
        declared=engine.declared(stack, s.root),
        options=record.Options(canary=1, batch="1", max_failures=0),
        plan=[
            Batch(index=0, kind="canary", nodes=("lab-gpu-01",)),
            Batch(index=1, kind="batch", nodes=("lab-gpu-02",)),
        ],
        differences={"lab-gpu-01": {"would_change": ["nccl : Fetch"], "versions": {"nccl": "2.20.5"}}},
        status=record.STOPPED,
        reason="canary: 1 failure(s)",
    )
    r.batches.append(
        record.BatchRecord(
            index=0, kind="canary", nodes=["lab-gpu-01"], started=record.now(), ended=record.now(), failures=["lab-gpu-01"]
        )
    )
    return json.loads(r.to_json())


RECORD = "runs/lab/rollouts/20261201T120000/rollout.json"


def broken_record(change: Callable[[dict[str, Any]], Any], folder: str = "20261201T120000") -> Callable[[Scratch], None]:
    def run(s: Scratch) -> None:
        doc = _record(s)
        out = change(doc)
        doc = doc if out is None else out
        s.write(f"runs/lab/rollouts/{folder}/rollout.json", json.dumps(doc) if not isinstance(doc, bytes) else doc)

    return run


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value

    return change


def joined(s: Scratch) -> None:
    """The lab as a site whose nodes are Nodes of a cluster: a rollout reads the kubeconfig."""
    s.stack(lambda site: site["kubernetes"].update(nodes_joined=True))


def kubeconfig(user: dict[str, Any] | None = None, **top: Any) -> Callable[[Scratch], None]:
    def run(s: Scratch) -> None:
        joined(s)
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
            "users": [{"name": "u", "user": user if user is not None else {"token": "t"}}],
            "contexts": [{"name": "aifactory-lab", "context": {"cluster": "c", "user": "u"}}],
            **top,
        }
        s.write("kubeconfig", yaml.safe_dump(doc))

    return run


def state_file(text: str | bytes) -> Callable[[Scratch], None]:
    def run(s: Scratch) -> None:
        path = s.tmp / "state" / "0123abcd" / "state.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return run


def evidence_folder(*steps: Callable[[Scratch], None]) -> Callable[[Scratch], None]:
    return several(plant("runs/lab/20261201T120000-evidence/verify.json", '{"ok": true}\n'), *steps)


STATE = {"AIFACTORY_STATE_DIR": "{tmp}/state", "AIFACTORY_RUN": "0123abcd"}
KUBE = {"KUBECONFIG": "{root}/kubeconfig"}
PASS = {"PULUMI_CONFIG_PASSPHRASE_FILE": str(ROOT / "stacks" / "lab.passphrase")}
GOOD_STATE = {
    "run": "0123abcd",
    "site": "lab",
    "checkout": "/x",
    "gateway": "172.29.0.1",
    "prefix": 24,
    "hosts": [{"name": "lab-gpu-01", "ip": "172.29.0.11", "pid": 0}],
}


# -- the cases -----------------------------------------------------------------------------

INV = "inventories/lab"
CASES: list[Case] = [
    # Files beside the inventory that Ansible would load: refused by --check (1) and by every run (2).
    Case("inv-yaml-check", ["inventory", "--check", "lab"], "group_vars/site_lab.yaml", plant(f"{INV}/group_vars/site_lab.yaml", SHELL_VARS), code=1),
    Case("inv-yaml-bootstrap", ["bootstrap", "lab"], "group_vars/site_lab.yaml", plant(f"{INV}/group_vars/site_lab.yaml", SHELL_VARS)),
    Case("inv-yaml-verify", ["verify", "lab"], "group_vars/site_lab.yaml", plant(f"{INV}/group_vars/site_lab.yaml", SHELL_VARS)),
    Case("inv-yaml-rollout", ["rollout", "lab", "--dry-run"], "group_vars/site_lab.yaml", plant(f"{INV}/group_vars/site_lab.yaml", SHELL_VARS)),
    Case("inv-yaml-bootstrap-check", ["bootstrap", "lab", "--check"], "site_lab.yaml", plant(f"{INV}/group_vars/site_lab.yaml", SSH_ARGS)),
    Case("inv-noext-check", ["inventory", "--check", "lab"], "group_vars/all:", plant(f"{INV}/group_vars/all", SHELL_VARS), code=1),
    Case("inv-noext-bootstrap", ["bootstrap", "lab"], "group_vars/all:", plant(f"{INV}/group_vars/all", SHELL_VARS)),
    Case("inv-json-bootstrap", ["bootstrap", "lab"], "all.json", plant(f"{INV}/group_vars/all.json", '{"ansible_python_interpreter": "/bin/false"}')),
    Case("inv-host-vars-file", ["bootstrap", "lab"], "inventories/lab/host_vars", plant(f"{INV}/host_vars/lab-gpu-01.yml", SHELL_VARS)),
    Case("inv-host-vars-dir", ["verify", "lab"], "host_vars", plant(f"{INV}/host_vars/lab-gpu-01/x.yml", SHELL_VARS)),
    Case("inv-group-dir", ["bootstrap", "lab"], "gpu_nodes", plant(f"{INV}/group_vars/gpu_nodes/x.yml", SHELL_VARS)),
    Case("inv-hidden", ["inventory", "--check", "lab"], ".x.yml", plant(f"{INV}/group_vars/.x.yml", SHELL_VARS), code=1),
    Case("inv-second-source", ["inventory", "--check", "lab"], "hosts.yaml", plant(f"{INV}/hosts.yaml", "all: {}\n"), code=1),
    Case("inv-rendered-is-link", ["bootstrap", "lab"], "group_vars/all.yml", plant_link(f"{INV}/group_vars/all.yml", "OUT/secret.txt")),
    Case("inv-link-check", ["inventory", "--check", "lab"], "group_vars/all.yml", plant_link(f"{INV}/group_vars/all.yml", "OUT/secret.txt"), code=1),
    Case("inv-extra-link", ["bootstrap", "lab"], "extra.yml", plant_link(f"{INV}/group_vars/extra.yml", "OUT/secret.txt")),
    Case("inv-group-vars-link", ["bootstrap", "lab"], "group_vars", plant_link(f"{INV}/group_vars", "OUT/dir")),
    Case("inv-site-link", ["verify", "lab"], INV, plant_link(INV, "OUT/dir")),
    Case("inv-fifo", ["inventory", "--check", "lab"], "group_vars/pipe", plant_fifo(f"{INV}/group_vars/pipe"), code=1),
    Case("inv-edited", ["bootstrap", "lab"], "sku_dgx_h100.yml: differs", plant(f"{INV}/group_vars/sku_dgx_h100.yml", SHELL_VARS)),
    Case("inv-missing", ["bootstrap", "lab"], "hosts.yml: missing", lambda s: s.at(f"{INV}/hosts.yml").unlink()),
    Case("playbook-group-vars", ["bootstrap", "lab"], "playbooks/group_vars/all.yml", plant("playbooks/group_vars/all.yml", SHELL_VARS)),
    Case("playbook-host-vars", ["verify", "lab"], "playbooks/host_vars", plant("playbooks/host_vars/lab-gpu-01", SHELL_VARS)),
    Case("playbook-vars-check", ["inventory", "--check"], "playbooks/group_vars", plant("playbooks/group_vars/x.json", "{}"), code=1),
    # --ssh-config reaches Ansible and SSH as data.
    Case("ssh-missing", ["bootstrap", "lab", "--ssh-config", "{tmp}/nowhere"], "--ssh-config"),
    Case("ssh-dir", ["bootstrap", "lab", "--ssh-config", "{tmp}"], "not a regular file"),
    Case("ssh-device", ["verify", "lab", "--ssh-config", "/dev/zero"], "not a regular file"),
    Case("ssh-colon", ["bootstrap", "lab", "--ssh-config", "{tmp}/a:b"], "without ':'", plant("../a:b", "Host *\n")),
    Case("ssh-newline", ["bootstrap", "lab", "--ssh-config", "{tmp}/a\nb"], "--ssh-config", plant("../a\nb", "Host *\n")),
    Case("ssh-rollout", ["rollout", "lab", "--dry-run", "--ssh-config", "/dev/null"], "not a regular file"),
    # A path that word-splitting would turn into an ssh option running a command: it reaches ssh as one word.
    Case("ssh-crafted-bootstrap", ["bootstrap", "lab", "--ssh-config", "{tmp}/" + CRAFTED.replace("{", "{{").replace("}", "}}")], "FAILED", several(plant("../" + CRAFTED, SSH_TO_NOWHERE), plant("../cfg", SSH_TO_NOWHERE)), code=1, seconds=120),
    Case("ssh-crafted-verify", ["verify", "lab", "--ssh-config", "{tmp}/" + CRAFTED.replace("{", "{{").replace("}", "}}")], "FAILED", several(plant("../" + CRAFTED, SSH_TO_NOWHERE), plant("../cfg", SSH_TO_NOWHERE)), code=1, seconds=120),
    # Numbers: ASCII digits only; selectors: a real pattern.
    Case("canary-arabic", ["rollout", "lab", "--dry-run", "--canary", "\u0663"], "--canary"),
    Case("canary-underscore", ["rollout", "lab", "--dry-run", "--canary", "1_0"], "--canary"),
    Case("canary-space", ["rollout", "lab", "--dry-run", "--canary", " 3"], "--canary"),
    Case("canary-plus", ["rollout", "lab", "--dry-run", "--canary", "+3"], "--canary"),
    Case("failures-fullwidth", ["rollout", "lab", "--dry-run", "--max-failures", "\uff13"], "--max-failures"),
    Case("batch-arabic", ["rollout", "lab", "--dry-run", "--batch", "\u0663%"], "--batch"),
    Case("drain-exponent", ["rollout", "lab", "--dry-run", "--drain-timeout", "1e3"], "--drain-timeout"),
    Case("parallel-zero", ["verify", "lab", "--parallel", "0"], "--parallel"),
    Case("parallel-devanagari", ["verify", "lab", "--parallel", "\u0968"], "--parallel"),
    Case("limit-empty", ["bootstrap", "lab", "--limit", ""], "--limit"),
    Case("limit-blank", ["verify", "lab", "--limit", "  "], "--limit"),
    Case("limit-file", ["bootstrap", "lab", "--limit", "@{outside}/secret.txt"], "--limit"),
    Case("limit-regex", ["verify", "lab", "--limit", "~.*"], "--limit"),
    Case("limit-newline", ["rollout", "lab", "--dry-run", "--limit", "lab-gpu-01\nall"], "--limit"),
    Case("limit-nothing", ["bootstrap", "lab", "--limit", "nosuch"], "matches no host"),
    # The environment: every variable checked before a command runs.
    Case("root-nowhere", ["validate"], "AIFACTORY_ROOT", env={"AIFACTORY_ROOT": "{tmp}/nowhere"}, root_arg=False),
    Case("root-not-project", ["inventory", "--check"], "AIFACTORY_ROOT", env={"AIFACTORY_ROOT": "{outside}"}, root_arg=False),
    Case("root-no-stacks", ["validate"], "no stacks", lambda s: shutil.rmtree(s.at("stacks")) or s.at("stacks").mkdir(), env={"AIFACTORY_ROOT": "{root}"}, root_arg=False),
    Case("root-option-nowhere", ["--root", "{tmp}/nowhere", "validate"], "--root", root_arg=False),
    Case("root-colon", ["validate"], "AIFACTORY_ROOT", lambda s: (s.tmp / "a:b").mkdir(), env={"AIFACTORY_ROOT": "{tmp}/a:b"}, root_arg=False),
    Case("mitogen-word", ["validate", "lab"], "AIFACTORY_MITOGEN", env={"AIFACTORY_MITOGEN": "yes"}),
    Case("debug-word", ["validate", "lab"], "AIFACTORY_DEBUG", env={"AIFACTORY_DEBUG": "true"}),
    Case("run-climbs", ["testhosts", "status"], "AIFACTORY_RUN", env={"AIFACTORY_RUN": "../../etc"}),
    Case("state-relative", ["testhosts", "status"], "AIFACTORY_STATE_DIR", env={"AIFACTORY_STATE_DIR": "state"}),
    Case("dcgm-level", ["validate", "lab"], "AIFACTORY_DCGM_LEVEL", env={"AIFACTORY_DCGM_LEVEL": "9"}),
    Case("passphrase-zero", ["storage", "check", "lab"], "PULUMI_CONFIG_PASSPHRASE_FILE", env={"PULUMI_CONFIG_PASSPHRASE_FILE": "/dev/zero"}),
    Case("passphrase-fifo", ["evidence", "list", "lab"], "not a regular file", plant_fifo("pipe"), env={"PULUMI_CONFIG_PASSPHRASE_FILE": "{root}/pipe"}),
    Case("passphrase-huge", ["storage", "apply", "lab"], "larger than", lambda s: os.truncate(s.write("big", b""), 100 << 20), env={"PULUMI_CONFIG_PASSPHRASE_FILE": "{root}/big"}),
    Case("passphrase-dir", ["storage", "check", "lab"], "PULUMI_CONFIG_PASSPHRASE_FILE", env={"PULUMI_CONFIG_PASSPHRASE_FILE": "{tmp}"}),
    # Kubeconfigs: a command in one is refused, and so is anything outside the schema.
    Case("kube-exec", ["rollout", "lab"], "users.0.user.exec", kubeconfig({"exec": {"command": "sh", "args": ["-c", PAYLOAD]}}), env=KUBE),
    Case("kube-auth-provider", ["rollout", "lab"], "auth-provider", kubeconfig({"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}}), env=KUBE),
    Case("kube-unknown-field", ["rollout", "lab"], "users.0.user.password-command", kubeconfig({"password-command": "x"}), env=KUBE),
    Case("kube-zero", ["rollout", "lab"], "not a regular file", joined, env={"KUBECONFIG": "/dev/zero"}),
    Case("kube-yaml", ["rollout", "lab"], "not a kubeconfig", several(joined, plant("kubeconfig", "clusters: [")), env=KUBE),
    Case("kube-list", ["rollout", "lab"], "KUBECONFIG", joined, env={"KUBECONFIG": "{root}/a:{root}/b"}),
    Case("kube-huge", ["rollout", "lab"], "larger than", several(joined, plant("kubeconfig", "#" * (2 << 20))), env=KUBE),
    Case("kube-no-context", ["rollout", "lab"], "no context 'aifactory-lab'", several(kubeconfig(), lambda s: s.write("kubeconfig", s.at("kubeconfig").read_text().replace("aifactory-lab", "other"))), env=KUBE),
    Case("kube-server-url", ["rollout", "lab"], "clusters.0.cluster.server", kubeconfig(clusters=[{"name": "c", "cluster": {"server": "https://x/\"; touch y"}}]), env=KUBE),
    # Rollout records: parsed whole, checked against the stack, before anything runs.
    Case("record-list", ["rollout", "lab", "--resume"], "rollout.json", broken_record(lambda d: [d])),
    Case("record-unknown-node", ["rollout", "lab", "--resume"], "plan.1.nodes", broken_record(_set("plan.1.nodes", ["za-gpu-01"]))),
    Case("record-string-number", ["rollout", "lab", "--resume"], "next_batch", broken_record(_set("next_batch", "1"))),
    Case("record-negative", ["rollout", "lab", "--resume"], "next_batch", broken_record(_set("next_batch", -1))),
    Case("record-skips-canary", ["rollout", "lab", "--resume"], "skips canary", broken_record(_set("next_batch", 1))),
    Case("record-past-plan", ["rollout", "lab", "--resume"], "next_batch", broken_record(_set("next_batch", 9))),
    Case("record-absolute-id", ["rollout", "lab", "--restart"], "rollout.json: id", broken_record(_set("id", "/tmp/x"))),
    Case("record-climbing-id", ["rollout", "lab", "--restart"], "rollout.json: id", broken_record(_set("id", "../../../x"))),
    Case("record-other-id", ["rollout", "lab", "--resume"], "the folder's id", broken_record(_set("id", "20261201T130000"))),
    Case("record-other-site", ["rollout", "lab", "--restart"], "rollout.json: site", broken_record(_set("site", "za"))),
    Case("record-unknown-field", ["rollout", "lab", "--resume"], "command: Extra inputs", broken_record(_set("command", PAYLOAD))),
    Case("record-not-utf8", ["rollout", "lab", "--status"], "rollout.json", broken_record(lambda d: b"\xff\xfe{")),
    Case("record-huge", ["rollout", "lab", "--status"], "larger than", broken_record(lambda d: b" " * (17 << 20))),
    Case("record-format", ["rollout", "lab", "--resume"], "format", broken_record(_set("format", 99))),
    Case("record-status", ["rollout", "lab", "--resume"], "status", broken_record(_set("status", "paused"))),
    Case("record-twice", ["rollout", "lab", "--resume"], "planned twice", broken_record(_set("plan.1.nodes", ["lab-gpu-01"]))),
    Case("record-batch-mismatch", ["rollout", "lab", "--resume"], "batches.0", broken_record(_set("batches.0.nodes", ["lab-gpu-02"]))),
    Case("record-deep", ["rollout", "lab", "--status"], "rollout.json", broken_record(lambda d: b"[" * 100_000)),
    Case("record-evidence-key", ["rollout", "lab", "--resume"], "evidence.0", broken_record(_set("evidence", ["../../etc/passwd"]))),
    Case("record-cordon-node", ["rollout", "lab", "--resume"], "cordoned_by_rollout", broken_record(_set("cordoned_by_rollout", ["nosuch-01"]))),
    Case("record-time", ["rollout", "lab", "--resume"], "started", broken_record(_set("started", "yesterday"))),
    Case("record-option-limit", ["rollout", "lab", "--resume"], "options.limit", broken_record(_set("options.limit", ""))),
    Case("record-link", ["rollout", "lab", "--status"], "symbolic link", plant_link(RECORD, "OUT/secret.txt")),
    Case("record-fifo", ["rollout", "lab", "--resume"], "not a regular file", plant_fifo(RECORD)),
    Case("record-missing", ["rollout", "lab", "--resume"], "no record", lambda s: s.at(RECORD).parent.mkdir(parents=True)),
    Case("record-planted-folder", ["rollout", "lab", "--status"], "evil", lambda s: s.at("runs/lab/rollouts/evil").mkdir(parents=True)),
    Case("rollouts-link", ["rollout", "lab", "--dry-run"], "rollouts", plant_link("runs/lab/rollouts", "OUT/dir")),
    Case("runs-site-link", ["rollout", "lab", "--restart"], "runs/lab", plant_link("runs/lab", "OUT/dir")),
    Case("lock-link", ["rollout", "lab", "--dry-run"], ".lock", plant_link("runs/lab/rollouts/.lock", "OUT/secret.txt")),
    Case("bootstrap-runs-link", ["bootstrap", "lab"], "runs/lab", plant_link("runs/lab", "OUT/dir")),
    # Evidence: only regular files the project wrote, all checked before the first upload.
    Case("evidence-link-in-folder", ["evidence", "push", "lab"], "symbolic link", evidence_folder(plant_link("runs/lab/20261201T120000-evidence/shadow", "OUT/secret.txt")), env=PASS),
    Case("evidence-outside", ["evidence", "push", "lab", "{outside}/secret.txt"], "not a record of lab", env=PASS),
    Case("evidence-link-file", ["evidence", "push", "lab", "{root}/runs/lab/x.txt"], "symbolic link", plant_link("runs/lab/x.txt", "OUT/secret.txt"), env=PASS),
    Case("evidence-fifo", ["evidence", "push", "lab", "{root}/runs/lab/pipe"], "not a regular file", plant_fifo("runs/lab/pipe"), env=PASS),
    Case("evidence-huge", ["evidence", "push", "lab", "{root}/runs/lab/big.bin"], "larger than 256 MiB", lambda s: os.truncate(s.write("runs/lab/big.bin", b""), 300 << 20), env=PASS),
    Case("evidence-name", ["evidence", "push", "lab", "{root}/runs/lab/a b.txt"], "file name", plant("runs/lab/a b.txt", "x"), env=PASS),
    Case("evidence-climb", ["evidence", "push", "lab", "{root}/runs/lab/../../../outside/secret.txt"], "not a record of lab", env=PASS),
    Case("evidence-folder-link", ["evidence", "push", "lab"], "symbolic link", several(plant("runs/lab/x", "x"), plant_link("runs/lab/20261201T120000-evidence", "OUT/dir")), env=PASS),
    Case("evidence-dir-link-inside", ["evidence", "push", "lab", "{root}/runs/lab/sub/secret.txt"], "symbolic link", plant_link("runs/lab/sub", "OUT"), env=PASS),
    Case("evidence-one-bad-of-two", ["evidence", "push", "lab", "{root}/runs/lab/ok.txt", "{root}/runs/lab/pipe"], "pipe", several(plant("runs/lab/ok.txt", "ok"), plant_fifo("runs/lab/pipe")), env=PASS),
    # Outputs: every target checked before the first is written.
    Case("verify-json-dir", ["verify", "lab", "--json", "{tmp}"], "--json"),
    Case("verify-junit-under-file", ["verify", "lab", "--junit", "{outside}/secret.txt/x.xml"], "not a directory"),
    Case("manifests-link", ["plan", "lab", "--manifests", "{tmp}/out"], "lab.yaml", lambda s: (s.tmp / "out").mkdir() or (s.tmp / "out" / "lab.yaml").symlink_to(s.outside / "secret.txt")),
    Case("manifests-file", ["plan", "lab", "--manifests", "{outside}/secret.txt"], "not a directory"),
    Case("manifests-values-dir", ["plan", "--all", "--manifests", "{tmp}/out"], "values.yaml", lambda s: (s.tmp / "out" / "za.gpu-operator.values.yaml").mkdir(parents=True)),
    Case("audit-html-dir", ["audit", "lab", "--out", "{tmp}/out"], "not a regular file", lambda s: (s.tmp / "out" / "audit-lab.html").mkdir(parents=True)),
    # Values: S3's reserved names, a secret too long to be a secret, a stack file that never ends.
    Case("bucket-xn", ["validate", "lab"], "xn--", lambda s: s.stack(_set("storage.object_store.buckets.0.name", "xn--lab-data"), render=False)),
    Case("bucket-s3alias", ["validate", "lab"], "-s3alias", lambda s: s.stack(_set("storage.object_store.buckets.0.name", "lab-data-s3alias"), render=False)),
    Case("bucket-sthree", ["validate", "lab"], "sthree-", lambda s: s.stack(_set("storage.object_store.buckets.0.name", "sthree-lab"), render=False)),
    Case("bucket-mrap", ["validate", "lab"], ".mrap", lambda s: s.stack(_set("storage.object_store.buckets.0.name", "lab.mrap"), render=False)),
    Case("secret-too-long", ["secret", "encrypt", "lab"], "larger than 1 MiB", env=PASS, stdin=b"x" * ((1 << 20) + 5)),
    Case("stack-fifo", ["validate", "lab"], "Pulumi.lab.yaml", plant_fifo("stacks/Pulumi.lab.yaml")),
    Case("stack-device", ["validate", "lab"], "not a regular file", plant_link("stacks/Pulumi.lab.yaml", "/dev/zero")),
    # Test-host state: a strict schema, and a corrupted file is one line.
    Case("state-list", ["testhosts", "status"], "state.json", state_file("[]"), env=STATE),
    Case("state-string-pid", ["testhosts", "status"], "hosts.0.pid", state_file(json.dumps({**GOOD_STATE, "hosts": [{"name": "lab-gpu-01", "ip": "172.29.0.11", "pid": "1"}]})), env=STATE),
    Case("state-bad-ip", ["testhosts", "status"], "gateway", state_file(json.dumps({**GOOD_STATE, "gateway": "172.29.0.1; touch x"})), env=STATE),
    Case("state-other-run", ["testhosts", "status"], "run", state_file(json.dumps({**GOOD_STATE, "run": "ffffffff"})), env=STATE),
    Case("state-huge", ["testhosts", "status"], "larger than", state_file(b" " * (2 << 20)), env=STATE),
    Case("state-link", ["testhosts", "status"], "symbolic link", lambda s: (s.tmp / "state" / "0123abcd").mkdir(parents=True) or (s.tmp / "state" / "0123abcd" / "state.json").symlink_to(s.outside / "secret.txt"), env=STATE),
    Case("state-pid-range", ["testhosts", "status"], "hosts.0.pid", state_file(json.dumps({**GOOD_STATE, "hosts": [{"name": "lab-gpu-01", "ip": "172.29.0.11", "pid": -1}]})), env=STATE),
]


def test_the_corpus_is_large_and_every_id_is_unique():
    assert len(CASES) >= 90
    assert len({c.id for c in CASES}) == len(CASES)


def _lock_or_folder(p: Path) -> bool:
    """A rollout takes the site's lock first (making runs/SITE/rollouts/.lock): not a record."""
    return p.name == ".lock" or (p.is_dir() and not p.is_symlink())


class _Alarm(Exception):
    pass


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_input_is_refused_cleanly(case: Case, scratch: Scratch, monkeypatch, capsys):
    case.setup(scratch)
    fill = {"root": str(scratch.root), "outside": str(scratch.outside), "marker": str(scratch.marker), "tmp": str(scratch.tmp)}
    for name in ("KUBECONFIG", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "AIFACTORY_ROOT", "AIFACTORY_RUN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIFACTORY_STATE_DIR", str(scratch.tmp / "state"))
    monkeypatch.setattr("aifactory.testhosts.run.STATE_ROOT", scratch.tmp / "state")  # read when imported
    for k, v in case.env.items():
        monkeypatch.setenv(k, v.format(**fill))
    monkeypatch.chdir(scratch.tmp)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(case.stdin)))
    argv = [a.format(**fill) for a in case.argv]
    if case.root_arg:
        argv = ["--root", str(scratch.root), *argv]
    outside_before = _snapshot(scratch.outside)
    runs_before = _snapshot(scratch.root / "runs", skip=_lock_or_folder)

    def alarm(*_a: object) -> None:
        raise _Alarm

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, case.seconds)
    start = time.monotonic()
    try:
        try:
            code = cli_main(argv)
        except SystemExit as exc:  # argparse's own refusal of an argument
            code = exc.code
    except _Alarm:
        pytest.fail(f"{case.id}: still running after {case.seconds:.0f} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.monotonic() - start
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == case.code, f"{case.id}: exit {code}, expected {case.code}\n{err}{out[-2000:]}"
    assert "internal error" not in err and "Traceback" not in err, err
    assert errors or case.code == 1, f"{case.id}: no error line\n{err}{out[-1000:]}"
    shown = errors[0] if errors else out
    assert case.expect.format(**fill) in shown, f"{case.id}: {case.expect!r} not in the first error line: {shown}"
    assert not scratch.marker.exists(), f"{case.id}: the payload ran"
    assert not list(scratch.tmp.rglob("aifactory-MARKER")), f"{case.id}: the crafted ssh option ran"
    assert _snapshot(scratch.outside) == outside_before, f"{case.id}: something outside the project changed"
    if case.code == 2:
        assert _snapshot(scratch.root / "runs", skip=_lock_or_folder) == runs_before, case.id
    assert scratch.requests == [], f"{case.id}: the store was asked {scratch.requests}"
    assert elapsed < case.seconds
