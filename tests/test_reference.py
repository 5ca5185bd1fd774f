"""The docs match the schema: the generated reference is current, and every site field a doc names exists."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from aifactory import reference
from aifactory.policies import CHECK_IDS

from .conftest import ROOT

DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "roles").glob("*/README.md")])
# A field path as the docs write one: `gpu_stack.driver`, `pools[].sku`, `network.fabric.rails[0].name`.
_PATH = re.compile(r"`((?:aifactory:site\.)?[a-z_]+(?:\[[0-9]*\])?(?:\.[a-z_]+(?:\[[0-9]*\])?)+)`")
TOP = {p.split(".")[0].removesuffix("[]") for p in reference.paths()}


def _normal(path: str) -> str:
    return re.sub(r"\[[0-9]*\]", "[]", path.removeprefix("aifactory:site."))


def named_fields(text: str) -> set[str]:
    """Field paths a text names: whole (`gpu_stack.driver`) or from a nested model (`mig.strategy`)."""
    out = set()
    for m in _PATH.finditer(text):
        token = m.group(1)
        if token in CHECK_IDS or token.endswith((".py", ".yml", ".yaml", ".md", ".sh", ".cfg", ".toml", ".json")):
            continue
        out.add(_normal(token))
    return out


def _exists(path: str, known: set[str]) -> bool:
    bare = {k.replace("[]", "") for k in known}
    candidates = {path, path.replace("[]", "")}
    return any(c in known or c in bare or any(k.endswith("." + c) for k in known | bare) for c in candidates)


def test_every_site_field_a_doc_names_exists_in_the_schema():
    known = reference.paths()
    missing = []
    for doc in DOCS:
        for path in sorted(named_fields(doc.read_text())):
            head = path.split(".")[0].removesuffix("[]")
            nested = any(k.split(".")[-1].removesuffix("[]") == head for k in known)
            if (head in TOP or nested) and not _exists(path, known):
                missing.append(f"{doc.relative_to(ROOT)}: `{path}`")
    assert missing == []


def test_the_check_catches_a_field_the_schema_refuses():
    assert not _exists("network.fabric.rails[].hca", reference.paths())
    assert _exists("network.fabric.rails[].name", reference.paths())
    assert _exists("mig.strategy", reference.paths())  # written from its own model, as READMEs do
    assert named_fields("set `gpu_stack.mig.default_profile` and `compat.driver-eol`") == {"gpu_stack.mig.default_profile"}


def test_the_generated_site_file_reference_is_current():
    assert (ROOT / "docs" / "site-file.md").read_text() == reference.render()


def test_every_field_the_reference_walks_has_a_description():
    assert reference.undescribed() == []


class _Inner(BaseModel):
    told: int = Field(description="said")
    untold: int


class _Outer(BaseModel):
    inner: list[_Inner] = Field(description="said")
    bare: str


def test_the_description_check_finds_an_undescribed_field_at_any_depth():
    assert reference.undescribed(_Outer) == ["inner[].untold", "bare"]
