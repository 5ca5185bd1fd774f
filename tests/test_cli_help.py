"""Every command says what it does: a description on each --help, a help text on each option."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from aifactory.audit import collect_inputs
from aifactory.cli import build_parser

from .conftest import ROOT


def parsers(parser: argparse.ArgumentParser, path: str = "aifactory") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


def test_every_command_has_a_description_and_every_option_and_argument_a_help():
    missing = []
    for path, parser in parsers(build_parser()):
        if not parser.description:
            missing.append(f"{path}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # its choices are the commands, each checked above
            if action.help is None:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.metavar or action.dest}: no help")
    assert not missing, missing


def test_the_top_level_help_prints_no_markup():
    assert "`" not in build_parser().format_help()


def test_every_stack_input_of_an_audit_is_labelled_by_its_site():
    from datetime import date

    labels = [k for k in collect_inputs(ROOT, "lab", date(2026, 11, 25), None).parts if k.startswith("stack")]
    assert "stack lab" in labels
    assert all(label.startswith("stack ") and label != "stack " for label in labels), labels
