"""Read ``stacks/Pulumi.<site>.yaml`` into a :class:`~aifactory.model.Site`.

The stack file is Pulumi's own format, so ``pulumi up -s <site>`` reads the same file:

    encryptionsalt: v1:...            # passphrase secrets provider
    config:
      aifactory:site: {...}            # the site model, no secrets in it
      aifactory:bmcCredentials:        # one entry per pool, passwords as Pulumi secrets
        <pool>: {username: admin, password: {secure: v1:...}}

Every problem is reported with the file and the field path; nothing raises a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError, Problem
from .model import Site
from .secrets import is_ciphertext

PROJECT = "aifactory"
SITE_KEY = f"{PROJECT}:site"
CREDENTIALS_KEY = f"{PROJECT}:bmcCredentials"
_CONFIG_KEYS = {SITE_KEY, CREDENTIALS_KEY}
_FILE_KEYS = {"config", "encryptionsalt", "secretsprovider", "encryptedkey"}


@dataclass(frozen=True)
class Credential:
    username: str
    password_ciphertext: str


@dataclass(frozen=True)
class Stack:
    """A loaded stack: the validated site, its credentials (still encrypted) and where it came from."""

    name: str
    path: Path
    site: Site
    site_config: dict[str, Any]
    credentials: dict[str, Credential]
    encryptionsalt: str


def project_root(start: Path | None = None) -> Path:
    """The checkout holding Pulumi.yaml: $AIFACTORY_ROOT, else upwards from cwd, else this package's repo."""
    env = os.environ.get("AIFACTORY_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file() and (candidate / "stacks").is_dir():
            return candidate
    return Path(__file__).resolve().parents[2]


def stacks_dir(root: Path) -> Path:
    return root / "stacks"


def stack_path(root: Path, name: str) -> Path:
    return stacks_dir(root) / f"Pulumi.{name}.yaml"


def list_stacks(root: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stacks_dir(root).glob("Pulumi.*.yaml"))


def display(path: Path, root: Path | None = None) -> str:
    try:
        return str(path.relative_to(root or Path.cwd()))
    except ValueError:
        return str(path)


def read_yaml(path: Path, shown: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError([Problem(shown, "", "no such stack file")]) from None
    except OSError as exc:
        raise ConfigError([Problem(shown, "", f"cannot read: {exc.strerror}")]) from None
    return parse_yaml(text, shown)


def parse_yaml(text: str, shown: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([Problem(shown, where, f"YAML syntax error: {reason}")]) from None


def load_stack(root: Path, name: str) -> Stack:
    path = stack_path(root, name)
    shown = display(path, root)
    if not path.is_file():
        known = ", ".join(list_stacks(root)) or "none"
        raise ConfigError([Problem(shown, "", f"no stack '{name}' (stacks here: {known})")])
    return parse_stack(read_yaml(path, shown), name, path, shown)


def load_stacks(root: Path, names: list[str]) -> list[Stack]:
    """Load several stacks, reporting the problems of all of them at once."""
    stacks: list[Stack] = []
    problems: list[Problem] = []
    for name in names:
        try:
            stacks.append(load_stack(root, name))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return stacks


def parse_stack(doc: Any, name: str, path: Path, shown: str) -> Stack:
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise ConfigError([Problem(shown, "", "a stack file is a YAML mapping with a 'config' key")])
    for key in sorted(set(doc) - _FILE_KEYS):
        problems.append(Problem(shown, str(key), "unknown key in a Pulumi stack file"))
    config = doc.get("config")
    if not isinstance(config, dict):
        raise ConfigError([*problems, Problem(shown, "config", "missing, or not a mapping")])
    for key in sorted(set(config) - _CONFIG_KEYS, key=str):
        problems.append(
            Problem(
                shown, f"config.{key}", f"unknown config key (this project reads {', '.join(sorted(_CONFIG_KEYS))})"
            )
        )

    raw_site = config.get(SITE_KEY)
    site: Site | None = None
    if raw_site is None:
        problems.append(Problem(shown, SITE_KEY, "required key is missing"))
    else:
        try:
            site = Site.model_validate(raw_site)
        except ValidationError as exc:
            problems.extend(validation_problems(exc, shown, SITE_KEY))

    credentials, cred_problems = _credentials(config.get(CREDENTIALS_KEY), site, shown)
    problems.extend(cred_problems)
    salt = doc.get("encryptionsalt", "")
    if credentials and not (isinstance(salt, str) and salt):
        problems.append(Problem(shown, "encryptionsalt", "secure values need the passphrase provider's encryptionsalt"))
    if site is not None and site.code != name:
        problems.append(Problem(shown, f"{SITE_KEY}.code", f"'{site.code}' does not match the stack name '{name}'"))

    if problems or site is None:
        raise ConfigError(sorted(set(problems)))
    return Stack(name, path, site, raw_site, credentials, salt)


def _credentials(raw: Any, site: Site | None, shown: str) -> tuple[dict[str, Credential], list[Problem]]:
    key = CREDENTIALS_KEY
    if raw is None:
        return {}, [Problem(shown, key, "required key is missing (one entry per pool)")]
    if not isinstance(raw, dict):
        return {}, [Problem(shown, key, "must map pool names to {username, password}")]
    creds: dict[str, Credential] = {}
    problems: list[Problem] = []
    for pool, entry in raw.items():
        where = f"{key}.{pool}"
        if not isinstance(entry, dict):
            problems.append(Problem(shown, where, "must be a mapping with username and password"))
            continue
        for extra in sorted(set(entry) - {"username", "password"}):
            problems.append(Problem(shown, f"{where}.{extra}", "unknown key"))
        username = entry.get("username")
        if not isinstance(username, str) or not username:
            problems.append(Problem(shown, f"{where}.username", "required, a non-empty string"))
        password = entry.get("password")
        if isinstance(password, dict) and set(password) == {"secure"} and is_ciphertext(password["secure"]):
            if isinstance(username, str) and username:
                creds[str(pool)] = Credential(username, password["secure"])
        elif isinstance(password, dict) and "secure" in password:
            problems.append(Problem(shown, f"{where}.password.secure", "not a Pulumi v1 ciphertext"))
        elif password is None:
            problems.append(Problem(shown, f"{where}.password", "required key is missing"))
        else:
            problems.append(
                Problem(
                    shown,
                    f"{where}.password",
                    "[secrets.plaintext] plaintext credential: BMC passwords must be Pulumi secrets (secure: v1:...); "
                    "encrypt one with `aifactory secret encrypt`",
                )
            )
    if site is not None:
        pools = {p.name for p in site.pools}
        for missing in sorted(pools - set(raw)):
            problems.append(Problem(shown, f"{key}.{missing}", "no BMC credentials for this pool"))
        for unknown in sorted(set(map(str, raw)) - pools):
            problems.append(Problem(shown, f"{key}.{unknown}", "credentials for a pool the site does not declare"))
    return creds, problems


def validation_problems(exc: ValidationError, shown: str, prefix: str) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        problems.append(Problem(shown, path, _message(err)))
    return problems


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind in {"value_error", "assertion_error"}:
        return msg
    value = err.get("input")
    shown = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
    return f"{msg} (got {shown})"
