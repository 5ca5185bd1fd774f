"""The mutation table stays applicable: each break names a line that occurs exactly once in its file.

A break whose line was rewritten away tries nothing, and the table would claim a catch it no longer
makes; `benchmarks/mutants.py` runs the breaks themselves.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from .conftest import ROOT

_SPEC = importlib.util.spec_from_file_location("mutants", ROOT / "benchmarks" / "mutants.py")
assert _SPEC and _SPEC.loader
mutants = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("mutants", mutants)  # its dataclasses look their module up there
_SPEC.loader.exec_module(mutants)


@pytest.mark.parametrize("brk", mutants.BREAKS, ids=lambda b: b.label)
def test_each_break_names_one_line_of_its_file(brk):
    text = (ROOT / brk.file).read_text()
    assert text.count(brk.line + "\n") == 1, f"{brk.file}: {brk.line!r}"
    assert brk.into != brk.line
    assert all((ROOT / t.split("::")[0]).exists() for t in brk.tests), brk.tests
