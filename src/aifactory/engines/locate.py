"""Where each engine is: a pinned `pulumi` already on PATH, else this machine's cache, built if missing.

A real SRE's laptop has the Pulumi CLI installed; when its version is the pinned one it is used
as it is, with the language host its distribution ships beside it, and neither is built. Every
other engine comes from the cache (``build.py``). :class:`Engines` gives the PATH that puts them
first: Pulumi finds its language host and provider plugins there ("ambient" plugins).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import OperationError
from .build import ENGINES_ROOT, Pinned, Say, build, duration, pin
from .recipes import BY_NAME, ENGINES

# What an installed Pulumi CLI brings with it (its release archive ships the language host beside it).
PULUMI_DISTRIBUTION = ("pulumi",)


@dataclass(frozen=True)
class Found:
    name: str
    version: str
    bin: Path
    how: str  # "cache", "built", "PATH"


@dataclass(frozen=True)
class Engines:
    found: dict[str, Found]

    def bin(self, name: str) -> Path:
        """The folder holding engine ``name``'s files."""
        return self.found[name].bin

    def exe(self, name: str, file: str | None = None) -> str:
        return str(self.bin(name) / (file or name))

    def path(self, base: str | None = None) -> str:
        dirs = list(dict.fromkeys(str(f.bin) for f in self.found.values()))
        return os.pathsep.join([*dirs, base if base is not None else os.environ.get("PATH", "")])

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PATH"] = self.path(env.get("PATH", ""))
        return env


def source_root(root: Path | None = None) -> Path:
    """The folder whose engines/ pins the engines: the project's, else the checkout this code runs from.

    A scratch project (the tests', the benchmarks') has stacks but no engines/: its engines are
    those of the aifactory that runs it.
    """
    if root is not None and (root / "engines").is_dir():
        return root
    here = Path(__file__).resolve().parents[3]
    if (here / "engines").is_dir():
        return here
    raise OperationError("engines: no engines/ folder in the project or beside this aifactory: run it from a checkout")


def root_engines(root: Path | None = None) -> dict[str, Pinned]:
    source = source_root(root)
    return {e.name: pin(source, e) for e in ENGINES}


def pulumi_on_path(version: str) -> Path | None:
    """The folder of a `pulumi` on PATH that is not ours and reports exactly ``version``."""
    found = shutil.which("pulumi")
    if not found or Path(found).resolve().is_relative_to(ENGINES_ROOT.resolve()):
        return None
    try:
        said = subprocess.run([found, "version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    if said.strip() != version:
        return None
    return Path(found).resolve().parent


def ensure(
    root: Path | None, names: Iterable[str] | None = None, say: Say = print, *, build_missing: bool = True
) -> Engines:
    """The engines ``names`` (default: all), building what this machine lacks, with progress and time."""
    wanted = list(names) if names is not None else [e.name for e in ENGINES]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise OperationError(f"engines: no engine named {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    source = source_root(root)
    pins = {n: pin(source, BY_NAME[n]) for n in wanted}
    found: dict[str, Found] = {}
    ambient = pulumi_on_path(pins["pulumi"].version) if "pulumi" in pins else None
    t0 = time.monotonic()
    built = []
    for name in wanted:
        p = pins[name]
        if ambient is not None and name in PULUMI_DISTRIBUTION:
            found[name] = Found(name, p.version, ambient, "PATH")
            continue
        if p.built() is not None:
            found[name] = Found(name, p.version, p.bin, "cache")
            continue
        if not build_missing:
            raise OperationError(
                f"engine {name} {p.version} is not built on this machine: run `aifactory engines build {name}`"
            )
        build(p, say)
        found[name] = Found(name, p.version, p.bin, "built")
        built.append(name)
    if built:
        say(f"engines built in {duration(time.monotonic() - t0)}: {', '.join(built)} (cached in {ENGINES_ROOT})")
    return Engines(found)
