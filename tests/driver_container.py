"""What NVIDIA's driver container installs, read from its own install.sh (vendored at a commit).

The functions of ``ubuntu22.04/install.sh`` that install the NVSwitch and NVLink packages are
small shell: ``if [ "$DRIVER_BRANCH" -ge "N" ]`` / ``[ "$TARGETARCH" = "amd64" ]`` branches,
``name=value`` assignments, ``return 0`` and ``apt-get install ... pkg=${DRIVER_VERSION}*``.
This evaluates exactly that subset for one driver branch and CPU architecture, and refuses any
line it does not understand, so an upstream change cannot be misread silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FIXTURE = (
    Path(__file__).parent / "fixtures" / "schemas" / "gpu-driver-container" / "1ae29e79" / "ubuntu22.04-install.sh"
)
FUNCTIONS = ("fabricmanager_install", "nscq_install", "nvsdm_install", "nvlink5_pkgs_install", "imex_install")

_IF = re.compile(r'(el)?if \[ "\$(DRIVER_BRANCH|TARGETARCH)" (-ge|=) "([a-z0-9]+)" \]; then')
_ASSIGN = re.compile(r"([a-z_]+)=([A-Za-z0-9_${}.-]+)")
_INSTALL = re.compile(r"apt-get install -y --no-install-recommends (.+)")


@dataclass(frozen=True)
class Installed:
    name: str
    pinned: bool  # installed at the driver's version (name=${DRIVER_VERSION}*)


def _functions(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z0-9_]+)\(\) \{", line)
        if m:
            current = m[1]
            out[current] = []
        elif line == "}":
            current = None
        elif current is not None:
            out[current].append(line.strip())
    return out


def installs(function: str, branch: int, arch: str, text: str | None = None) -> list[Installed]:
    """The packages ``function`` installs for a driver branch on an architecture (amd64 | arm64)."""
    body = _functions(text if text is not None else FIXTURE.read_text())[function]
    env = {"DRIVER_BRANCH": str(branch), "TARGETARCH": arch}
    out: list[Installed] = []
    # A stack of (this branch taken, some branch of this if already taken).
    stack: list[tuple[bool, bool]] = []

    def active() -> bool:
        return all(taken for taken, _ in stack)

    for line in body:
        if not line or line.startswith("#") or line.startswith("local ") or line.startswith("apt-mark hold"):
            continue
        m = _IF.fullmatch(line)
        if m:
            elif_, var, op, value = m.groups()
            holds = int(env[var]) >= int(value) if op == "-ge" else env[var] == value
            if elif_:
                _, done = stack.pop()
                stack.append((not done and holds, done or holds))
            else:
                stack.append((holds, holds))
            continue
        if line == "else":
            _, done = stack.pop()
            stack.append((not done, True))
            continue
        if line == "fi":
            stack.pop()
            continue
        if not active():
            continue
        if line == "return 0":
            break
        m = _ASSIGN.fullmatch(line)
        if m:
            env[m[1]] = m[2].replace("${DRIVER_BRANCH}", env["DRIVER_BRANCH"])
            continue
        m = _INSTALL.fullmatch(line)
        if m:
            for raw in m[1].split():
                word = re.sub(r"\$\{([a-z_]+)\}", lambda v: env[v[1]], raw)
                name, _, version = word.partition("=")
                out.append(Installed(name, version == "${DRIVER_VERSION}*"))
            continue
        raise ValueError(f"{function}: a line this reader does not understand: {line!r}")
    return out
