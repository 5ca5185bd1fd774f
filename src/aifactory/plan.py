"""Offline plan: run the Pulumi program under Pulumi's own mock runtime and record every registration.

No CLI, no credentials, no network. Secret values never reach the plan: the BMC credentials are
fed in as secret config holding a marker, and any value the SDK serialises as secret is printed as
``[secret]``. The result is sorted into a tree, so the same stack gives byte-identical output.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import mocks
from pulumi.runtime.config import set_all_config
from pulumi.runtime.settings import reset_options

from .stackfile import CREDENTIALS_KEY, PROJECT, SITE_KEY, Stack

SECRET = "[secret]"  # noqa: S105 - the mask, not a password
UNKNOWN = "[unknown]"
# Wire signatures of Pulumi's property serialisation (sdk/python/lib/pulumi/runtime/rpc.py).
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SIG_SECRET = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 - a wire signature
_SIG_RESOURCE = "5cf8f73096256a8f31e491e813e4eb8e"
_UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
# What the plan feeds in place of each BMC password; tests assert it never shows.
PLACEHOLDER = "aifactory-plan-placeholder-not-a-secret"


@dataclass(frozen=True)
class Registration:
    type: str
    name: str
    urn: str
    parent_urn: str
    inputs: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.type}::{self.name}"


@dataclass
class Plan:
    site: str
    resources: list[Registration]
    outputs: dict[str, Any]
    _by_urn: dict[str, Registration] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_urn = {r.urn: r for r in self.resources}

    def parent_key(self, reg: Registration) -> str | None:
        parent = self._by_urn.get(reg.parent_urn)
        return parent.key if parent else None

    def counts(self) -> Counter[str]:
        return Counter(r.type for r in self.resources)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "resources": [
                {"type": r.type, "name": r.name, "parent": self.parent_key(r), "inputs": r.inputs}
                for r in self.resources
            ],
            "outputs": self.outputs,
        }


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class _RecordingMonitor(mocks.MockMonitor):
    def __init__(self) -> None:
        super().__init__(_Mocks())
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(request.type, request.name, response.urn, request.parent, _inputs(request.object))
            )
        return response


def _inputs(props: struct_pb2.Struct) -> dict[str, Any]:
    # A dynamic resource's pickled provider is code, not a declared input (and a secret blob).
    return {k: v for k, v in _struct(props).items() if k != "__provider"}


def _value(v: struct_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        fields = v.struct_value.fields
        if _SIG_KEY in fields:
            sig = fields[_SIG_KEY].string_value
            if sig == _SIG_SECRET:
                return _masked(_value(fields["value"])) if "value" in fields else SECRET
            if sig == _SIG_RESOURCE:
                return fields["urn"].string_value
        return _struct(v.struct_value)
    if kind == "list_value":
        return [_value(x) for x in v.list_value.values]
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() else n
    if kind == "string_value":
        return UNKNOWN if v.string_value == _UNKNOWN_VALUE else v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None


def _masked(value: Any) -> Any:
    """A secret value with its shape kept and every leaf masked: a Secret's keys are not secret, its values are."""
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return SECRET


def _struct(s: struct_pb2.Struct) -> dict[str, Any]:
    return {k: _value(s.fields[k]) for k in sorted(s.fields)}


def _tree_order(regs: list[Registration]) -> list[Registration]:
    children: dict[str, list[Registration]] = {}
    urns = {r.urn for r in regs}
    for r in regs:
        children.setdefault(r.parent_urn if r.parent_urn in urns else "", []).append(r)
    ordered: list[Registration] = []

    def walk(parent: str) -> None:
        for r in sorted(children.get(parent, []), key=lambda r: (r.type, r.name)):
            ordered.append(r)
            walk(r.urn)

    walk("")
    return ordered


@contextlib.contextmanager
def _no_source_positions() -> Iterator[None]:
    """Skip the SDK's capture of each registration's Python stack, for the offline plan only.

    The one reach into Pulumi SDK internals: pulumi.runtime.resource._get_stack_trace walks
    traceback.extract_stack() (source lines included) on every registration so that the engine can
    point at the program's line; the mock runtime has no engine to tell. Measured: 0.61 s of a 4.85 s
    1,024-node plan. tests/test_plan.py fails loudly if the SDK renames or reshapes the function.
    """
    from pulumi.runtime import resource as sdk_resource

    original = sdk_resource._get_stack_trace
    sdk_resource._get_stack_trace = _empty_stack_trace
    try:
        yield
    finally:
        sdk_resource._get_stack_trace = original


def _empty_stack_trace() -> Any:
    from pulumi.runtime.proto import source_pb2

    return source_pb2.StackTrace()


def run_plan(stack: Stack) -> Plan:
    """Run the site's program under mocks; safe to call repeatedly in one process."""
    from .program import build  # the program imports pulumi_kubernetes: keep `aifactory sites` fast

    reset_options(project=PROJECT, stack=stack.name, preview=True)
    monitor = _RecordingMonitor()
    mocks.set_mocks(monitor.mocks, project=PROJECT, stack=stack.name, preview=True, monitor=monitor)
    placeholders = {
        pool: {"username": cred.username, "password": PLACEHOLDER} for pool, cred in stack.credentials.items()
    }
    set_all_config(
        {SITE_KEY: json.dumps(stack.site_config), CREDENTIALS_KEY: json.dumps(placeholders)},
        [CREDENTIALS_KEY],
    )
    captured: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        credentials = pulumi.Config(PROJECT).require_secret_object(CREDENTIALS_KEY.split(":", 1)[1])
        outs = build(stack.site, credentials)
        return pulumi.Output.from_input(outs).apply(captured.update)

    with _no_source_positions():
        program()
    return Plan(stack.name, _tree_order(_engine_urns(monitor.registrations, stack.name)), captured)


def _engine_urns(regs: list[Registration], stack: str) -> list[Registration]:
    """The registrations under the URNs the engine gives them, not the mock runtime's.

    The mock monitor (pulumi 3.260) names a resource by its immediate parent's type only, and puts
    ``pulumi:pulumi:Stack$`` before a top-level resource's type; the engine chains the types of all
    its ancestors but the stack (seen beside a real `pulumi preview`: tests/test_pulumi_sites.py).
    """
    by_urn = {r.urn: r for r in regs}
    chains: dict[str, str] = {}

    def chain(r: Registration) -> str:
        if r.urn not in chains:
            parent = by_urn.get(r.parent_urn)
            chains[r.urn] = f"{chain(parent)}${r.type}" if parent else r.type
        return chains[r.urn]

    real = {r.urn: f"urn:pulumi:{stack}::{PROJECT}::{chain(r)}::{r.name}" for r in regs}
    root = next((r.parent_urn for r in regs if r.parent_urn not in by_urn), "")
    return [Registration(r.type, r.name, real[r.urn], real.get(r.parent_urn, root), r.inputs) for r in regs]


@atexit.register
def _close_idle_loops() -> None:
    """Close, at exit, the event loops the mock runtime's worker threads keep for reuse.

    Left open, they are collected after their self-pipe sockets, and asyncio prints a
    spurious 'Invalid file descriptor' traceback.
    """
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and not obj.is_running() and not obj.is_closed():
            obj.close()


def render_text(plan: Plan, show_inputs: bool = False) -> str:
    depth: dict[str, int] = {}
    lines = [f"plan for site '{plan.site}': {len(plan.resources)} resources", ""]
    for r in plan.resources:
        d = depth[r.urn] = depth.get(r.parent_urn, -1) + 1
        lines.append(f"{'  ' * d}{'+ ' if d == 0 else '└ '}{r.type}  {r.name}")
        if show_inputs:
            lines.append(f"{'  ' * (d + 1)}  {json.dumps(r.inputs, sort_keys=True, separators=(',', ':'))}")
    lines += ["", "resources by type:"]
    for type_, n in sorted(plan.counts().items()):
        lines.append(f"  {n:6d}  {type_}")
    lines += ["", "outputs:"]
    out = plan.outputs
    lines.append(f"  gpus: {out['gpus']['total']} on {len(out['nodes'])} nodes")
    lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in out["versions"].items()))
    return "\n".join(lines) + "\n"


def render_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n"
