"""Validate planned Kubernetes objects the way the API server would, against vendored upstream files.

Custom resources are checked against the served version's openAPIV3Schema of the CRD at the
release the site pins, with every field the schema does not declare counted as a failure (the API
server would prune it silently). Core kinds go through kubernetes-validate in strict mode.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

FIXTURES = Path(__file__).parent / "fixtures" / "schemas"


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """An openAPIV3Schema as JSON Schema, closed wherever Kubernetes would prune unknown fields."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {k: structural(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [structural(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "description", "example"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    if out.get("type") == "object" and "additionalProperties" not in schema and not preserve:
        out["additionalProperties"] = False
    return out


@cache
def crd_schema(path: str, kind: str, version: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all((FIXTURES / path).read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition" and doc["spec"]["names"]["kind"] == kind:
            for v in doc["spec"]["versions"]:
                if v["name"] == version and v.get("served", True):
                    schema = structural(v["schema"]["openAPIV3Schema"])
                    # metadata is the API server's ObjectMeta, validated elsewhere.
                    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                    return schema
    raise KeyError(f"{path}: no served {kind} {version}")


def _problems(validator: jsonschema.protocols.Validator, obj: Any, label: str) -> list[str]:
    out = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{label}: {where}: {err.message}")
    return out


def custom_resource_problems(obj: dict[str, Any], crd_path: str) -> list[str]:
    kind = obj["kind"]
    version = obj["apiVersion"].split("/")[-1]
    schema = crd_schema(crd_path, kind, version)
    return _problems(jsonschema.Draft7Validator(schema), obj, f"{kind}/{obj['metadata'].get('name')}")


def core_problems(obj: dict[str, Any], k8s_version: str) -> list[str]:
    try:
        kubernetes_validate.validate(json.loads(json.dumps(obj)), k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(root)"
        return [f"{obj['kind']}/{obj['metadata'].get('name')} (Kubernetes {k8s_version}): {where}: {exc.message}"]
    return []


def partial_problems(value: Any, schema: dict[str, Any], label: str) -> list[str]:
    """Check only what is given: unknown fields, types and enums; fields the value omits are fine."""

    def open_required(s: Any) -> Any:
        if isinstance(s, dict):
            return {k: open_required(v) for k, v in s.items() if k != "required"}
        if isinstance(s, list):
            return [open_required(v) for v in s]
        return s

    return _problems(jsonschema.Draft7Validator(open_required(schema)), value, label)
