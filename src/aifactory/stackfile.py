"""Read ``stacks/Pulumi.<site>.yaml`` into a :class:`~aifactory.model.Site`.

The stack file is Pulumi's own format, so ``pulumi up -s <site>`` reads the same file:

    encryptionsalt: v1:...            # passphrase secrets provider
    config:
      aifactory:stackFormat: 5         # the file's format (aifactory.migrations)
      aifactory:site: {...}            # the site model, no secrets in it
      aifactory:bmcCredentials:        # one entry per pool, passwords as Pulumi secrets
        <pool>: {username: admin, password: {secure: v1:...}}
      aifactory:objectStoreCredentials: # optional: the object store's S3 keys (storage, evidence)
        {access_key_id: ..., secret_access_key: {secure: v1:...}}

Every problem is reported with the file, the field path, its line and (for a node) its host name;
nothing raises a traceback. A working-tree stack must be of the current format; a revision read
from git (``history=True``) is upgraded through :mod:`aifactory.migrations` first.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from . import grammar
from .errors import ConfigError, Problem
from .grammar import FieldError, shown
from .locations import Locator, Positions
from .migrations import CURRENT, FORMAT_KEY, STEPS, MigrationError, declared_format, shape_of, upgrade
from .model import Site
from .secrets import is_ciphertext, salt_problem

PROJECT = "aifactory"
SITE_KEY = f"{PROJECT}:site"
CREDENTIALS_KEY = f"{PROJECT}:bmcCredentials"
S3_CREDENTIALS_KEY = f"{PROJECT}:objectStoreCredentials"
_CONFIG_KEYS = {FORMAT_KEY, SITE_KEY, CREDENTIALS_KEY, S3_CREDENTIALS_KEY}
_FILE_KEYS = {"config", "encryptionsalt", "secretsprovider", "encryptedkey"}


@dataclass(frozen=True)
class Credential:
    username: str
    password_ciphertext: str


@dataclass(frozen=True)
class S3Credential:
    """The object store's S3 key pair; the secret key stays a ciphertext until a command needs it."""

    access_key_id: str
    secret_ciphertext: str = field(repr=False)


@dataclass(frozen=True)
class Stack:
    """A loaded stack: the validated site, its credentials (still encrypted) and where it came from."""

    name: str
    path: Path
    site: Site
    site_config: dict[str, Any]
    credentials: dict[str, Credential]
    encryptionsalt: str
    shown: str = ""  # the file as messages name it (relative to the checkout, or FILE@REV)
    s3_credential: S3Credential | None = None
    format: int = CURRENT  # the format the file was written in (older only for a revision read from git)
    migrated: tuple[str, ...] = ()  # what each upgrade step did, one note per step that changed something
    locator: Locator | None = field(default=None, repr=False, compare=False)

    def place(self, problem: Problem) -> Problem:
        """A problem about this stack with the line and host name its path leads to."""
        return self.locator.place(problem) if self.locator else problem

    def written(self, path: str) -> Any:
        """A field's value as the file wrote it (a MAC in its own case), or None."""
        return self.locator.written(path) if self.locator else None


def project_root(start: Path | None = None) -> Path:
    """The checkout holding Pulumi.yaml: $AIFACTORY_ROOT, else upwards from cwd, else this package's repo.

    Whichever it is must be a project with stacks (environment.project): a root pointing nowhere
    is an error, never a project of zero sites that validates.
    """
    from .environment import project

    env = os.environ.get("AIFACTORY_ROOT")
    if env:
        return project(Path(env), "AIFACTORY_ROOT")
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file() and (candidate / "stacks").is_dir():
            return project(candidate, "the project found from the current directory")
    return project(Path(__file__).resolve().parents[2], "this package's checkout (set AIFACTORY_ROOT or --root)")


def stacks_dir(root: Path) -> Path:
    return root / "stacks"


def site_name_problem(name: str) -> str | None:
    """Why a site name (a CLI argument, a stack file's name) cannot name a site, or None."""
    try:
        grammar.site_code(name)
    except ValueError as exc:
        return str(exc)
    return None


def check_site_name(name: str, where: str = "SITE") -> str:
    """Refuse a site name before it is joined to any path: it names files, folders and a bridge."""
    problem = site_name_problem(name)
    if problem:
        raise ConfigError([Problem(where, "", problem)])
    return name


def stack_path(root: Path, name: str) -> Path:
    check_site_name(name)
    return stacks_dir(root) / f"Pulumi.{name}.yaml"


def list_stacks(root: Path) -> list[str]:
    """Names of the stack files here; a file whose name is no site code is listed too, and refused on load."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stacks_dir(root).glob("Pulumi.*.yaml"))


def unique(names: list[str]) -> list[str]:
    """Names in the order given, each once (`validate za za` validates za once)."""
    return list(dict.fromkeys(names))


def display(path: Path, root: Path | None = None) -> str:
    try:
        return str(path.relative_to(root or Path.cwd()))
    except ValueError:
        return str(path)


MAX_DEPTH = 32
MAX_BYTES = 256 * 2**20


class _Refused(yaml.MarkedYAMLError):
    """A construct that is valid YAML but not accepted in a stack file."""


class _Checks:
    """What a stack file may not hold, refused while it is read (each refusal names the line).

    Duplicate keys (PyYAML keeps the last silently), keys that are not strings, anchors and
    aliases (a few lines can expand into gigabytes once a model walks them) and nesting deeper
    than any stack needs (PyYAML's composer recurses). A mixin: the loader below puts it over
    libyaml's parser when PyYAML has it, else over PyYAML's own.
    """

    _depth = 0
    positions: Positions | None = None  # where parse_yaml wants the lines noted

    def construct_yaml_map(self, node: Any) -> Any:
        data: dict[Any, Any] = {}
        yield data
        data.update(self.construct_mapping(node))
        if self.positions is not None:
            self.positions.note_mapping(data, node)

    def construct_yaml_seq(self, node: Any) -> Any:
        data: list[Any] = []
        yield data
        data.extend(self.construct_sequence(node))  # type: ignore[attr-defined]
        if self.positions is not None:
            self.positions.note_sequence(data, node)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused(
                problem="YAML anchors and aliases (&name, *name) are not accepted in a stack file: write values out",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)  # type: ignore[misc]
        seen: dict[str, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(
                    problem="merge keys (<<) are not accepted in a stack file", problem_mark=key_node.start_mark
                )
            key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
            if not isinstance(key, str):
                raise _Refused(
                    problem=f"key {shown(key)} is a {type(key).__name__}, not a string (quote it)",
                    problem_mark=key_node.start_mark,
                )
            if key in seen:
                raise _Refused(
                    problem=f"duplicate key {shown(key)} (first on line {seen[key].line + 1})",
                    problem_mark=key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class _PyStackLoader(_Checks, yaml.SafeLoader):
    """PyYAML's safe loader, pure Python: where PyYAML was built without libyaml."""


if yaml.__with_libyaml__:
    from yaml._yaml import CParser  # libyaml's scanner and parser, in C
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    class _CStackLoader(_Checks, CParser, Composer, SafeConstructor, Resolver):  # type: ignore[misc]
        """libyaml scans and parses (its events carry the same marks, so errors name the same lines); composing
        and constructing stay PyYAML's, in Python, so that _Checks sees every node. Measured on a 100,000-node
        stack (5.6 MB): 12.8 s with the pure-Python loader, 5.1 s with this one, 5.05 s with PyYAML's
        CSafeLoader, which would skip the checks. libyaml words some syntax errors its own way."""

        # CParser composes in C, past _Checks: the Python composer is used instead.
        get_single_node = Composer.get_single_node
        compose_document = Composer.compose_document
        get_node = Composer.get_node
        check_node = Composer.check_node

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    _StackLoader: type = _CStackLoader
else:  # pragma: no cover - PyYAML without libyaml
    _StackLoader = _PyStackLoader

for _loader in {_PyStackLoader, _StackLoader}:
    _loader.add_constructor("tag:yaml.org,2002:map", _loader.construct_yaml_map)
    _loader.add_constructor("tag:yaml.org,2002:seq", _loader.construct_yaml_seq)


def read_yaml(path: Path, shown_path: str, positions: Positions | None = None) -> Any:
    from .fsutil import read_user_file

    if not path.exists():
        raise ConfigError([Problem(shown_path, "", "no such stack file")])
    data = read_user_file(path, MAX_BYTES, shown_path)  # a regular file only (not a FIFO or /dev/zero), bounded
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(shown_path, "", f"not UTF-8 text (byte {exc.start}: 0x{data[exc.start]:02x})")]
        ) from None
    return parse_yaml(text, shown_path, positions)


def parse_yaml(text: str, shown_path: str, positions: Positions | None = None) -> Any:
    """The document, read by the checking loader; ``positions`` (when given) gets each mapping's and list's lines."""
    try:
        loader = _StackLoader(text)
        loader.positions = positions
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        refused = isinstance(exc, _Refused)
        if "maximum nesting depth" in reason:  # libyaml's own limit, met ahead of ours in flow collections
            reason, refused = f"nested deeper than {MAX_DEPTH} levels", True
        kind = "" if refused else "YAML syntax error: "
        raise ConfigError([Problem(shown_path, where, f"{kind}{reason}")]) from None
    except RecursionError:
        raise ConfigError([Problem(shown_path, "", f"nested deeper than {MAX_DEPTH} levels")]) from None


def load_stack(root: Path, name: str) -> Stack:
    problem = site_name_problem(name)
    if problem:
        where = display(stacks_dir(root), root) + f"/Pulumi.{shown(name)[1:-1]}.yaml"
        raise ConfigError([Problem(where, "", f"the stack name: {problem}")])
    path = stack_path(root, name)
    shown_path = display(path, root)
    if not path.is_file() and not path.exists():
        known = ", ".join(n for n in list_stacks(root) if not site_name_problem(n)) or "none"
        raise ConfigError([Problem(shown_path, "", f"no stack '{name}' (stacks here: {known})")])
    positions = Positions()
    try:
        return parse_stack(read_yaml(path, shown_path, positions), name, path, shown_path, positions=positions)
    except ConfigError:
        raise
    except (RecursionError, OverflowError, TypeError, ValueError, UnicodeError, MemoryError) as exc:
        # The grammars should have caught it; a stack file still never gets a traceback.
        raise ConfigError(
            [Problem(shown_path, "", f"cannot be read ({type(exc).__name__}: {shown(str(exc))})")]
        ) from None


def load_stacks(root: Path, names: list[str]) -> list[Stack]:
    """Load several stacks, reporting the problems of all of them at once."""
    stacks: list[Stack] = []
    problems: list[Problem] = []
    for name in unique(names):
        try:
            stacks.append(load_stack(root, name))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return stacks


def load_neighbours(root: Path, names: list[str]) -> list[Stack]:
    """Every other stack that loads: cross-site rules compare with them; a broken one is reported on its own."""
    out = []
    for name in list_stacks(root):
        if name in names:
            continue
        try:
            out.append(load_stack(root, name))
        except ConfigError:
            continue
    return out


def parse_stack(
    doc: Any, name: str, path: Path, shown_path: str, *, positions: Positions | None = None, history: bool = False
) -> Stack:
    """A parsed stack file as a Stack. ``history``: a revision read from git, upgraded from its own format
    (the document is upgraded in place); otherwise the file must be of the current format."""
    locator = Locator(doc, positions)
    try:
        return _parse_stack(doc, name, path, shown_path, locator, history=history)
    except ConfigError as exc:
        problems = {locator.place(p) for p in exc.problems}
        raise ConfigError(sorted(problems, key=Problem.sort_key)) from None


def _format(config: dict[str, Any], shown_path: str, *, history: bool) -> tuple[int, tuple[str, ...]]:
    """The format the file was written in and, for a revision, the notes of the steps that upgraded it."""
    try:
        declared = declared_format(config)
        if history:
            upgraded = upgrade(config)
            return upgraded.found, upgraded.notes
    except MigrationError as exc:
        where = "" if history else FORMAT_KEY
        raise ConfigError([Problem(shown_path, where, f"cannot be read as format {CURRENT}: {exc}")]) from None
    if declared == CURRENT:
        return CURRENT, ()
    found = declared if declared is not None else shape_of(config)
    said = f"declares format {declared}" if declared is not None else f"declares no format; its shape is format {found}"
    if found == CURRENT:
        raise ConfigError([Problem(shown_path, FORMAT_KEY, f"{said}: declare {FORMAT_KEY}: {CURRENT}")])
    problems = [
        Problem(
            shown_path,
            FORMAT_KEY,
            f"{said}, and this checkout reads format {CURRENT} (`diff --rev` still reads old revisions): "
            f"upgrade the file by hand, step by step as below",
        )
    ]
    problems += [Problem(shown_path, FORMAT_KEY, f"step {s.name}: {s.how}") for s in STEPS[found - 1 :]]
    raise ConfigError(problems)


def _parse_stack(doc: Any, name: str, path: Path, shown_path: str, locator: Locator, *, history: bool) -> Stack:
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise ConfigError([Problem(shown_path, "", "a stack file is a YAML mapping with a 'config' key")])
    for key in sorted(set(doc) - _FILE_KEYS):
        problems.append(Problem(shown_path, shown_key(key), "unknown key in a Pulumi stack file"))
    config = doc.get("config")
    if not isinstance(config, dict):
        raise ConfigError([*problems, Problem(shown_path, "config", "missing, or not a mapping")])
    found, notes = _format(config, shown_path, history=history)
    for key in sorted(set(config) - _CONFIG_KEYS, key=str):
        problems.append(
            Problem(
                shown_path,
                f"config.{shown_key(key)}",
                f"unknown config key (this project reads {', '.join(sorted(_CONFIG_KEYS))})",
            )
        )

    raw_site = config.get(SITE_KEY)
    site: Site | None = None
    if raw_site is None:
        problems.append(Problem(shown_path, SITE_KEY, "required key is missing"))
    else:
        try:
            site = Site.model_validate(raw_site)
        except ValidationError as exc:
            problems.extend(validation_problems(exc, shown_path, SITE_KEY))

    credentials, cred_problems = _credentials(config.get(CREDENTIALS_KEY), site, shown_path)
    problems.extend(cred_problems)
    s3_credential, s3_problems = _s3_credential(config.get(S3_CREDENTIALS_KEY), shown_path)
    problems.extend(s3_problems)
    salt = doc.get("encryptionsalt", "")
    if (credentials or s3_credential) and not (isinstance(salt, str) and salt):
        problems.append(
            Problem(shown_path, "encryptionsalt", "secure values need the passphrase provider's encryptionsalt")
        )
    elif salt != "" and (why := salt_problem(salt)):
        problems.append(Problem(shown_path, "encryptionsalt", why))
    for key in ("secretsprovider", "encryptedkey"):
        if key in doc:
            problems.append(
                Problem(shown_path, key, "this project uses the passphrase secrets provider (encryptionsalt) only")
            )
    if site is not None and site.code != name:
        problems.append(
            Problem(shown_path, f"{SITE_KEY}.code", f"'{site.code}' does not match the stack name '{name}'")
        )

    if (problems or site is None) and found < CURRENT:
        # Upgraded, and still refused by today's model (a value today's grammars or catalog refuse): one line.
        first = sorted(set(map(locator.place, problems)), key=Problem.sort_key)
        more = f" (and {len(first) - 1} more)" if len(first) > 1 else ""
        why = f"{first[0].path}: {first[0].message}{first[0].where}" if first[0].path else first[0].message
        said = f"format {found}, upgraded to format {CURRENT}, is refused by today's model: {why}{more}"
        raise ConfigError([Problem(shown_path, "", said)])
    if problems or site is None:
        raise ConfigError(problems)
    return Stack(
        name,
        path,
        site,
        raw_site,
        credentials,
        salt,
        shown_path,
        s3_credential,
        format=found,
        migrated=notes,
        locator=Locator(locator.doc, locator.positions, site),
    )


def _secure_problem(value: Any, shown_path: str, where: str, rule: str) -> Problem | None:
    """Why a credential is not a Pulumi secret ({secure: v1:...}), or None when it is one."""
    if isinstance(value, dict) and set(value) == {"secure"} and is_ciphertext(value["secure"]):
        return None
    if isinstance(value, dict) and "secure" in value:
        return Problem(shown_path, f"{where}.secure", "not a Pulumi v1 ciphertext")
    if value is None:
        return Problem(shown_path, where, "required key is missing")
    return Problem(
        shown_path,
        where,
        f"[secrets.plaintext] plaintext credential: {rule} (secure: v1:...); "
        "encrypt one with `aifactory secret encrypt`",
    )


# AWS and Ceph RGW access key ids: upper-case letters and digits (RGW accepts what its admin sets).
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]{8,128}", re.ASCII)


def _s3_credential(raw: Any, shown_path: str) -> tuple[S3Credential | None, list[Problem]]:
    key = S3_CREDENTIALS_KEY
    if raw is None:
        return None, []
    if not isinstance(raw, dict):
        return None, [Problem(shown_path, key, "must be a mapping with access_key_id and secret_access_key")]
    problems = [
        Problem(shown_path, f"{key}.{shown_key(extra)}", "unknown key")
        for extra in sorted(set(map(str, raw)) - {"access_key_id", "secret_access_key"})
    ]
    access = raw.get("access_key_id")
    if not isinstance(access, str) or not _ACCESS_KEY.fullmatch(access):
        problems.append(Problem(shown_path, f"{key}.access_key_id", "required: 8-128 of A-Z a-z 0-9"))
    secret = raw.get("secret_access_key")
    problem = _secure_problem(
        secret, shown_path, f"{key}.secret_access_key", "the S3 secret key must be a Pulumi secret"
    )
    if problem:
        problems.append(problem)
    if problems:
        return None, problems
    return S3Credential(str(access), secret["secure"]), []


def _credentials(raw: Any, site: Site | None, shown_path: str) -> tuple[dict[str, Credential], list[Problem]]:
    key = CREDENTIALS_KEY
    if raw is None:
        return {}, [Problem(shown_path, key, "required key is missing (one entry per pool)")]
    if not isinstance(raw, dict):
        return {}, [Problem(shown_path, key, "must map pool names to {username, password}")]
    creds: dict[str, Credential] = {}
    problems: list[Problem] = []
    for pool, entry in raw.items():
        where = f"{key}.{shown_key(pool)}"
        if not isinstance(entry, dict):
            problems.append(Problem(shown_path, where, "must be a mapping with username and password"))
            continue
        for extra in sorted(set(entry) - {"username", "password"}):
            problems.append(Problem(shown_path, f"{where}.{shown_key(extra)}", "unknown key"))
        username = entry.get("username")
        if not isinstance(username, str) or not _USERNAME.fullmatch(username):
            problems.append(
                Problem(shown_path, f"{where}.username", "required: 1-64 of A-Z a-z 0-9 . _ @ - (a BMC account name)")
            )
            username = None
        password = entry.get("password")
        problem = _secure_problem(password, shown_path, f"{where}.password", "BMC passwords must be Pulumi secrets")
        if problem:
            problems.append(problem)
        elif isinstance(username, str) and username:
            creds[str(pool)] = Credential(username, password["secure"])
    if site is not None:
        pools = {p.name for p in site.pools}
        for missing in sorted(pools - set(raw)):
            problems.append(Problem(shown_path, f"{key}.{missing}", "no BMC credentials for this pool"))
        for unknown in sorted(set(map(str, raw)) - pools):
            problems.append(
                Problem(shown_path, f"{key}.{shown_key(unknown)}", "credentials for a pool the site does not declare")
            )
    return creds, problems


_USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}", re.ASCII)
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_:-]{1,64}", re.ASCII)


def shown_key(key: object) -> str:
    """A mapping key as a field path shows it: plain keys as they are, anything else quoted and escaped."""
    text = str(key)
    return text if _PLAIN_KEY.fullmatch(text) else shown(text, 40)


def validation_problems(exc: ValidationError, shown_path: str, prefix: str) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, FieldError):
            loc += error.loc
        path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{shown_key(p)}" for p in loc)
        problems.append(Problem(shown_path, path, _message(err)))
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
    got = shown(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
    return f"{msg} (got {got})"
