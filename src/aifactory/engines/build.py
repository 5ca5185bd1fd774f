"""Building an engine from its pinned Go module into the machine's cache, once per machine.

An engine's cache entry is ``CACHE_ROOT/engines/NAME-KEY``, where KEY hashes the engine's folder
under ``engines/`` (go.mod, go.sum, any wrapper source) and its recipe: the pins, and nothing
else, so a second checkout, a CI job or a later run finds the binaries a first one built. A build
runs in a staging folder beside the entry and is renamed into place whole, under a per-entry
lock, so two checkouts building at once build once and never see half an entry.

Failures are one line: Go missing or too old, the module proxy refusing a module or out of
reach, a checksum that does not match go.sum, a compile error (with the build log's path).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from ..caches import CACHE_ROOT
from ..errors import OperationError
from .gomod import GoMod, go_version_tuple, parse
from .recipes import Engine

Say = Callable[[str], None]
ENGINES_ROOT = CACHE_ROOT / "engines"
MANIFEST = "engine.json"
PROGRESS_SECONDS = 20.0
_PACKAGE_LINE = re.compile(r"[A-Za-z0-9_./~+-]+")
_UNREACHABLE = ("dial tcp", "no such host", "i/o timeout", "connection refused", "TLS handshake", "unreachable")
_GOVERSION = re.compile(r"go([0-9]+\.[0-9]+(?:\.[0-9]+)?)")


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s"


@dataclass(frozen=True)
class Pinned:
    """An engine at the pins of one checkout's engines/ folder."""

    engine: Engine
    sources: dict[str, Path]  # folder under engines/ -> its path in the checkout
    gomods: dict[str, GoMod]
    key: str

    @property
    def source(self) -> Path:
        return self.sources[self.engine.name]

    @property
    def gomod(self) -> GoMod:
        return self.gomods[self.engine.name]

    @property
    def go_needed(self) -> str:
        return max((m.go for m in self.gomods.values()), key=go_version_tuple)

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def version(self) -> str:
        return self.gomod.version_of(self.engine.version_module)

    @property
    def dir(self) -> Path:
        return ENGINES_ROOT / f"{self.name}-{self.key}"

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    @property
    def log(self) -> Path:
        return ENGINES_ROOT / f"{self.name}-{self.key}.log"

    def built(self) -> dict[str, object] | None:
        """The entry's manifest if every file it lists is there, else None."""
        try:
            manifest = json.loads((self.dir / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or not all((self.bin / f).is_file() for f in self.engine.files):
            return None
        return manifest


def pin(root: Path, engine: Engine) -> Pinned:
    sources: dict[str, Path] = {}
    gomods: dict[str, GoMod] = {}
    h = sha256(repr(engine).encode())
    for folder in engine.modules:
        source = root / "engines" / folder
        if not (source / "go.mod").is_file():
            raise OperationError(f"engine {engine.name}: {source / 'go.mod'} is missing (the pins live in engines/)")
        sources[folder], gomods[folder] = source, parse(source / "go.mod")
        for path in sorted(p for p in source.iterdir() if p.is_file()):
            h.update(f"{folder}/{path.name}\0{path.stat().st_size}\0".encode())
            h.update(path.read_bytes())
    return Pinned(engine, sources, gomods, h.hexdigest()[:16])


def stamp_values(version: str) -> dict[str, str]:
    bare = version.removeprefix("v")
    major, minor = bare.split(".")[:2]
    return {"version": version, "bare": bare, "major": major, "minor": minor}


# -- the toolchain ---------------------------------------------------------------------------


def go_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The go.mod's go line is the toolchain; never download another one. go.sum is the truth:
    # -mod=readonly refuses a build that would change go.mod or miss a hash.
    env.update({"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly -buildvcs=false"})
    env.update(extra or {})
    return env


def toolchain(needed: str) -> tuple[str, str]:
    """The `go` on PATH and its version, if it is at least ``needed``; else one line saying what to do."""
    go = shutil.which("go")
    install = (
        f"install Go {needed} or later from https://go.dev/dl/ (tar -C /usr/local -xzf go*.tar.gz) "
        "and put /usr/local/go/bin on PATH"
    )
    if go is None:
        raise OperationError(f"engines: Go is not installed, and the engines are built from source with it: {install}")
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True, env=go_env()).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise OperationError(f"engines: `{go} env GOVERSION` failed ({exc}): {install}") from None
    m = _GOVERSION.match(out.strip())
    if not m:
        raise OperationError(f"engines: cannot read the version of {go} ({out.strip()[:60]!r}): {install}")
    if go_version_tuple(m[1]) < go_version_tuple(needed):
        raise OperationError(f"engines: {go} is Go {m[1]}, the engines' go.mod needs {needed}: {install}")
    return go, m[1]


def go_failure(what: str, output: str, log: Path | None = None) -> str:
    """One line for a failed go command: the proxy, the network, a checksum, or the first error."""
    lines = [
        ln.strip()
        for ln in output.splitlines()
        if ln.strip() and not _PACKAGE_LINE.fullmatch(ln.strip()) and not ln.startswith(("go: downloading", "#"))
    ]
    text = " ".join(lines)
    proxy = os.environ.get("GOPROXY", "https://proxy.golang.org,direct")
    where = f" (full log: {log})" if log else ""
    if m := re.search(r"([\w./-]+@v[\w.+-]+): (?:reading|verifying) \S+: (?:403|404|410)\b", text):
        return f"{what}: the Go module proxy ({proxy}) does not serve {m[1]}: set GOPROXY to one that does{where}"
    if "SECURITY ERROR" in text or "checksum mismatch" in text:
        first = next((ln for ln in lines if "mismatch" in ln or "SECURITY" in ln), lines[0])
        return f"{what}: a module does not match the hash in go.sum, refusing it: {first[:200]}{where}"
    for marker in _UNREACHABLE:
        if marker in text:
            return (
                f"{what}: the Go module proxy ({proxy}) cannot be reached ({marker}): "
                f"set GOPROXY to one this machine reaches{where}"
            )
    first = lines[0] if lines else "no output"
    return f"{what}: {first[:240]}{where}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _go(go: str, args: list[str], cwd: Path, what: str, log: Path) -> str:
    proc = subprocess.run([go, *args], cwd=cwd, capture_output=True, text=True, check=False, env=go_env())
    with log.open("a") as fh:
        fh.write(f"$ go {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise OperationError(go_failure(what, proc.stderr + proc.stdout, log))
    return proc.stdout


def _compile(go: str, args: list[str], cwd: Path, *, what: str, log: Path, total: int, say: Say) -> int:
    """`go build -v`, saying every PROGRESS_SECONDS how many packages it has compiled so far."""
    compiled = 0
    t0 = time.monotonic()
    with log.open("a") as fh:
        fh.write(f"$ go {' '.join(args)}\n")
        fh.flush()
        proc = subprocess.Popen(
            [go, *args], cwd=cwd, stdout=fh, stderr=subprocess.PIPE, text=True, env=go_env(), bufsize=1
        )
        assert proc.stderr is not None
        errors: list[str] = []
        done = threading.Event()

        def tick() -> None:
            while not done.wait(PROGRESS_SECONDS):
                say(f"  {what}: {compiled} of {total} packages compiled, {duration(time.monotonic() - t0)}")

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            for line in proc.stderr:
                fh.write(line)
                if _PACKAGE_LINE.fullmatch(line.strip()):
                    compiled += 1
                else:
                    errors.append(line)
            rc = proc.wait()
        finally:
            done.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if rc != 0:
        raise OperationError(go_failure(what, "".join(errors), log))
    return compiled


def _module_dir(go: str, module: str, cwd: Path, log: Path, what: str) -> Path:
    out = _go(go, ["mod", "download", "-json", module], cwd, what, log)
    try:
        return Path(json.loads(out)["Dir"])
    except (ValueError, KeyError) as exc:
        raise OperationError(f"{what}: `go mod download {module}` gave no module folder ({exc})") from None


def _write_embed(src: Path, dest: Path, version: str | None) -> None:
    doc = json.loads(src.read_text(encoding="utf-8"))
    if version is not None:
        doc["version"] = version
    dest.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")


def _check_version(p: Pinned, binary: Path, log: Path) -> None:
    if not p.engine.version_args:
        return
    try:
        argv = [str(binary), *p.engine.version_args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationError(f"engine {p.name}: the built {binary.name} does not run ({exc}); see {log}") from None
    said = (proc.stdout + proc.stderr).strip()
    if stamp_values(p.version)["bare"] not in said:
        raise OperationError(f"engine {p.name}: the built {binary.name} reports {said[:80]!r}, not {p.version}")


def build(p: Pinned, say: Say) -> dict[str, object]:
    """The engine's cache entry, built now unless this machine already has it; its manifest."""
    if (manifest := p.built()) is not None:
        return manifest
    go, go_version = toolchain(p.go_needed)
    with _locked(ENGINES_ROOT / f"{p.name}-{p.key}.lock"):
        if (manifest := p.built()) is not None:  # another checkout built it while we waited
            return manifest
        return _build_locked(p, go, go_version, say)


def _build_locked(p: Pinned, go: str, go_version: str, say: Say) -> dict[str, object]:
    what = f"engine {p.name} {p.version}"
    staging = ENGINES_ROOT / f".{p.name}-{p.key}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    src, bin_ = staging / "src", staging / "bin"
    for folder, source in p.sources.items():
        shutil.copytree(source, src / folder)
    own = src / p.name
    bin_.mkdir(parents=True)
    p.log.write_text("")
    t0 = time.monotonic()
    try:
        say(f"{what}: {p.engine.summary}; building {', '.join(p.engine.files)} with Go {go_version} (log {p.log})")
        for embed in p.engine.embeds:
            module_dir = _module_dir(go, embed.module, own, p.log, what)
            version = stamp_values(p.version)["bare"] if embed.set_version else None
            _write_embed(module_dir / embed.path, own / embed.to, version)
        say(f"  {what}: resolving and downloading its modules (go.sum-verified)")
        total = 0
        for folder in p.sources:
            packages = [o.package for o in p.engine.outputs if (o.module or p.name) == folder]
            listed = _go(go, ["list", "-deps", "-f", "{{.ImportPath}}", *packages], src / folder, what, p.log)
            total += len(listed.split())
        compiled = 0
        for out in p.engine.outputs:
            folder = out.module or p.name
            version = p.gomods[folder].version_of(out.version_module or p.engine.version_module)
            ldflags = " ".join(["-s", "-w", *(s.format(**stamp_values(version)) for s in p.engine.stamps)])
            args = ["build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(bin_ / out.file), out.package]
            compiled += _compile(go, args, src / folder, what=what, log=p.log, total=total, say=say)
        for comp in p.engine.companions:
            module_dir = _module_dir(go, comp.module, own, p.log, what)
            shutil.copyfile(module_dir / comp.path, bin_ / comp.file)
            (bin_ / comp.file).chmod(0o755)
        _check_version(p, bin_ / p.engine.outputs[0].file, p.log)
        seconds = time.monotonic() - t0
        manifest: dict[str, object] = {
            "name": p.name,
            "version": p.version,
            "key": p.key,
            "go": go_version,
            "seconds": round(seconds, 1),
            "packages_compiled": compiled,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": {f: sha256((bin_ / f).read_bytes()).hexdigest() for f in p.engine.files},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(src)
        shutil.rmtree(p.dir, ignore_errors=True)  # a partial entry (files missing) from before
        staging.rename(p.dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"{what}: built in {duration(seconds)} ({compiled} packages compiled, {total} in its build)")
    return manifest
