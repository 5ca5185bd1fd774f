"""Reading an engine's go.mod: its Go version and the version of each module it requires.

The engine's version is whatever its go.mod requires (one fact, one place); this reads it with a
fully matched grammar of the lines ``go mod tidy`` writes, and refuses anything else by line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, Problem

_PATH = r"[A-Za-z0-9][A-Za-z0-9._~/+-]*"
_VERSION = r"v[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.+-]+)?(?:\+incompatible)?"
_REQ = re.compile(rf"({_PATH}) ({_VERSION})(?: // indirect)?")
_REPLACE = re.compile(rf"({_PATH})(?: {_VERSION})? => ({_PATH}) ({_VERSION})")
_PATH_RE = re.compile(_PATH)
_GO = re.compile(r"[0-9]+\.[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class GoMod:
    module: str
    go: str
    requires: dict[str, str] = field(default_factory=dict)
    replaces: dict[str, tuple[str, str]] = field(default_factory=dict)
    tools: tuple[str, ...] = ()

    def version_of(self, module: str) -> str:
        """The version the build uses: a replace's target version, else the requirement's."""
        if module in self.replaces:
            return self.replaces[module][1]
        return self.requires[module]


def go_version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def parse(path: Path) -> GoMod:
    shown = str(path)
    module = go = ""
    requires: dict[str, str] = {}
    replaces: dict[str, tuple[str, str]] = {}
    tools: list[str] = []
    block = ""
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if block and line == ")":
            block = ""
            continue
        if block:
            verb, body = block, line
        else:
            verb, _, body = line.partition(" ")
            if body == "(":
                block = verb
                continue
        if verb == "module" and _PATH_RE.fullmatch(body):
            module = body
        elif verb == "go" and _GO.fullmatch(body):
            go = body
        elif verb == "toolchain" and re.fullmatch(r"go[0-9.]+", body):
            pass
        elif verb == "require" and (m := _REQ.fullmatch(body)):
            requires[m[1]] = m[2]
        elif verb == "replace" and (m := _REPLACE.fullmatch(body)):
            replaces[m[1]] = (m[2], m[3])
        elif verb == "tool" and _PATH_RE.fullmatch(body):
            tools.append(body)
        else:
            raise ConfigError([Problem(shown, f"line {number}", "not a go.mod line this project writes")])
    if not module or not go:
        raise ConfigError([Problem(shown, "", "a go.mod needs its module and go lines")])
    return GoMod(module, go, requires, replaces, tuple(tools))
