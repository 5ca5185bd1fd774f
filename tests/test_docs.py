"""The house a newcomer reads: a short README, and docs whose links and paths lead somewhere real."""

from __future__ import annotations

import re

from .test_reference import DOCS, ROOT

_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# A path into the checkout as the docs write one, in backticks: `tests/test_storage.py`, `roles/nccl`.
_REPO_PATH = re.compile(
    r"`((?:src|tests|roles|stacks|engines|benchmarks|docs|playbooks|inventories|templates)/[A-Za-z0-9_./-]+)`"
)


def test_the_readme_is_read_in_ten_minutes():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 150, len(lines)


def test_the_readme_carries_exactly_the_two_set_up_commands():
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"^    (make \S+)", text, re.MULTILINE)
    assert commands == ["make lab", "make test"], commands
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_link_in_the_docs_leads_to_a_file_that_exists():
    broken = []
    for doc in DOCS:
        for target in _LINK.findall(doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).resolve().exists():
                broken.append(f"{doc.relative_to(ROOT)}: ({target})")
    assert broken == []


def test_every_path_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        for path in sorted(set(_REPO_PATH.findall(doc.read_text()))):
            if any(part.isupper() for part in path.split("/")):  # a placeholder: inventories/SITE/
                continue
            if not (ROOT / path.rstrip("/.")).exists():
                missing.append(f"{doc.relative_to(ROOT)}: `{path}`")
    assert missing == []


def test_each_stack_file_points_at_a_doc_that_exists():
    for stack in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        head = "\n".join(stack.read_text().splitlines()[:5])
        for named in re.findall(r"\b(docs/[A-Za-z0-9_./-]+\.md)\b", head):
            assert (ROOT / named).exists(), f"{stack.name}: {named}"
        assert "README '" not in head, f"{stack.name} points at a README section"
