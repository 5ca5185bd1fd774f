"""The checkout's git history as an auditor names it: a revision or a date, the commits between, the tree's state.

A date is resolved on the commit history, never on the reflog: ``--since 2026-11-24`` is the last
commit before 2026-11-24 00:00 UTC on HEAD's first-parent history (the commits of the branch
itself, not those of merged branches), and what was chosen is printed with its date. Reflog
revisions (``HEAD@{1 month ago}``) name where this clone's refs pointed, which a fresh clone
does not know: they are refused. git's own warnings are passed on, never swallowed. Every
argument reaches git after ``--end-of-options`` or as a full-matched hash.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import findings, grammar
from .errors import ConfigError, Problem
from .locations import Positions
from .stackfile import MAX_BYTES, Stack, parse_stack, parse_yaml, stack_path

_SHA = re.compile(r"[0-9a-f]{40,64}", re.ASCII)
_DATE = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})(?:[T ](?P<time>[0-9]{2}:[0-9]{2}(?::[0-9]{2})?)"
    r"(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})?)?",
    re.ASCII,
)
FIRST_PARENT = "HEAD's first-parent history"


@dataclass(frozen=True)
class Commit:
    sha: str
    date: str  # committer date, ISO 8601, as git records it
    author: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:7]

    def line(self) -> str:
        return f"{self.short} {self.date} {self.author}: {self.subject}"

    def to_json(self) -> dict[str, str]:
        return {"commit": self.sha, "date": self.date, "author": self.author, "subject": self.subject}


@dataclass(frozen=True)
class Resolved:
    """What a --rev, --since or --against named: the commit, and how it was chosen."""

    asked: str
    commit: Commit
    rule: str = ""  # for a date: the rule that chose the commit

    @property
    def label(self) -> str:
        """How a diff names this side: the revision as typed, or the commit a date chose."""
        return self.commit.short if self.rule else grammar.shown(self.asked)[1:-1]

    def said(self) -> str:
        asked = grammar.shown(self.asked)[1:-1]
        chosen = f"{self.commit.short} of {self.commit.date} by {self.commit.author}"
        return f"{asked} is {chosen}, {self.rule}" if self.rule else f"{asked} is {chosen}"

    def to_json(self) -> dict[str, str]:
        return {"asked": self.asked, "rule": self.rule, **self.commit.to_json()}


def _clean(text: str, limit: int = 160) -> str:
    """Commit text as a line may show it: control characters replaced, cut to a sane length."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run git in the checkout; its warnings reach the user, once each."""
    proc = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, errors="replace", check=False
    )
    for line in proc.stderr.splitlines():
        if line.startswith("warning:"):
            findings.warn(f"warning: git: {_clean(line.removeprefix('warning:').strip(), 400)}")
    return proc


def _fatal(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("warning:")]
    return _clean(lines[0], 300) if lines else f"git exited {proc.returncode}"


_FORMAT = "%H%x00%cI%x00%an%x00%s"  # one line per commit: a subject and an author name hold no newline


def _commit_of(fields: list[str]) -> Commit:
    if len(fields) != 4 or not _SHA.fullmatch(fields[0]):
        raise ConfigError([Problem("git", "", "git log printed a line this program does not read")])
    return Commit(fields[0], fields[1], _clean(fields[2], 80), _clean(fields[3]))


def commit(root: Path, sha: str) -> Commit:
    """A commit's hash, committer date, author and subject."""
    proc = git(root, "log", "-1", f"--format={_FORMAT}", sha, "--")
    if proc.returncode != 0:
        raise ConfigError([Problem("git", "", f"cannot read commit {sha[:12]}: {_fatal(proc)}")])
    return _commit_of(proc.stdout.rstrip("\n").split("\x00"))


def _bad(option: str, text: str, why: str) -> ConfigError:
    return ConfigError([Problem(option, "", f"{grammar.shown(text)} {why}")])


def parse_date(text: str, option: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM] (UTC where no zone is given)."""
    match = _DATE.fullmatch(text)
    if not match:
        raise _bad(option, text, "is not a date (YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])")
    try:
        when = datetime.fromisoformat(text.replace(" ", "T").replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(option, text, f"is not a date ({exc})") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def is_date(text: str) -> bool:
    return bool(_DATE.fullmatch(text))


def _head(root: Path, option: str) -> str:
    proc = git(root, "rev-parse", "--verify", "--end-of-options", "HEAD^{commit}")
    sha = proc.stdout.strip()
    if proc.returncode != 0 or not _SHA.fullmatch(sha):
        raise ConfigError([Problem(option, "", f"{root.name} is not a git checkout with a commit: {_fatal(proc)}")])
    return sha


def resolve_date(root: Path, text: str, option: str) -> Resolved:
    """The last commit before ``text`` on HEAD's first-parent history."""
    when = parse_date(text, option)
    stamp = when.isoformat()
    _head(root, option)
    proc = git(root, "rev-list", "-1", "--first-parent", f"--before={stamp}", "HEAD")
    sha = proc.stdout.strip()
    if proc.returncode != 0:
        raise _bad(option, text, f"cannot be resolved: {_fatal(proc)}")
    if not sha:
        roots = git(root, "rev-list", "--first-parent", "--max-parents=0", "HEAD").stdout.split()
        first = commit(root, roots[-1]) if roots else None
        shallow = git(root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        why = f"; the first is {first.short} of {first.date}" if first else ""
        why += " (this clone is shallow: git fetch --unshallow)" if shallow else ""
        raise _bad(option, text, f"is before every commit on {FIRST_PARENT}{why}")
    if not _SHA.fullmatch(sha):
        raise _bad(option, text, "cannot be resolved")
    return Resolved(text, commit(root, sha), f"the last commit before {stamp} on {FIRST_PARENT}")


def _is_ref(root: Path, name: str) -> bool:
    refs = (f"refs/{kind}/{name}" for kind in ("tags", "heads"))
    return any(git(root, "show-ref", "--verify", "--quiet", ref).returncode == 0 for ref in refs)


def resolve(root: Path, text: str, option: str = "--rev") -> Resolved:
    """The commit a user's revision or date names, checked by git itself; never passed to git as an option."""
    if not text or text.startswith("-") or len(text) > 256 or not text.isprintable():
        raise _bad(option, text, "is not a git revision")
    if "@{" in text:
        raise _bad(
            option,
            text,
            "reads git's reflog or tracking setup (@{...}: where this clone's refs pointed, which another clone "
            "does not know), not the project's history: name a date with --since YYYY-MM-DD, or a commit or tag",
        )
    if is_date(text):
        if _is_ref(root, text):
            raise _bad(
                option, text, "is both a date and a tag or branch: give --since for the date, refs/tags/... for the tag"
            )
        return resolve_date(root, text, option)
    proc = git(root, "rev-parse", "--verify", "--end-of-options", f"{text}^{{commit}}")
    sha = proc.stdout.strip()
    if proc.returncode != 0 or not _SHA.fullmatch(sha):
        raise _bad(option, text, f"names no commit in {root.name}")
    return Resolved(text, commit(root, sha))


def show(root: Path, sha: str, rel: str) -> bytes | None:
    """A file's bytes at a commit (``sha`` a full hash), or None where the commit has no such file."""
    if not _SHA.fullmatch(sha):
        raise ValueError("show needs a full commit hash")
    proc = subprocess.run(["git", "-C", str(root), "show", f"{sha}:{rel}"], capture_output=True, check=False)
    return proc.stdout if proc.returncode == 0 else None


@dataclass(frozen=True)
class Between:
    """The commits from one side of a comparison to HEAD on HEAD's first-parent history."""

    total: int
    touching: tuple[Commit, ...]  # those that changed the file compared, newest first
    path: str
    on_history: bool  # whether the old side is an ancestor of HEAD (else: commits since their merge base)

    def lines(self) -> list[str]:
        head = f"commits from it to HEAD on {FIRST_PARENT}: {self.total}, {len(self.touching)} changed {self.path}"
        if not self.on_history:
            head += " (it is not on that history: counted from where the two meet)"
        return [head + (":" if self.touching else ""), *(f"  {c.line()}" for c in self.touching)]

    def to_json(self) -> dict[str, object]:
        return {
            "total": self.total,
            "path": self.path,
            "on_history": self.on_history,
            "changed_the_file": [c.to_json() for c in self.touching],
        }


def between(root: Path, old: str, path: str) -> Between:
    if not _SHA.fullmatch(old):
        raise ValueError("between needs a full commit hash")
    count = git(root, "rev-list", "--count", "--first-parent", f"{old}..HEAD").stdout.strip()
    log = git(root, "log", "--first-parent", f"--format={_FORMAT}", f"{old}..HEAD", "--", path)
    touching = [_commit_of(line.split("\x00")) for line in log.stdout.splitlines()]
    ancestor = git(root, "merge-base", "--is-ancestor", old, "HEAD").returncode == 0
    return Between(int(count) if count.isdigit() else 0, tuple(touching), path, ancestor)


@dataclass(frozen=True)
class TreeState:
    """Whether the checkout's files are the commit's: an audit's bytes come from the working tree."""

    head: Commit | None  # None: not a git checkout
    changed: tuple[str, ...]  # files that differ from HEAD (modified, added, deleted, untracked), as git names them

    @property
    def clean(self) -> bool:
        return self.head is not None and not self.changed


def tree_state(root: Path, inputs: tuple[str, ...] = ()) -> TreeState:
    """The checkout's state: tracked files that differ from HEAD, and untracked files under ``inputs``
    (folders whose every file a command reads, as an audit reads stacks/ and src/): an untracked file
    elsewhere (a report written into the checkout) changes nothing a command read."""
    proc = git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", "HEAD^{commit}")
    sha = proc.stdout.strip()
    if proc.returncode != 0 or not _SHA.fullmatch(sha):
        return TreeState(None, ())
    status = git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    changed = []
    for entry in status.stdout.split("\x00"):
        if len(entry) < 4:
            continue
        path = entry[3:]
        if entry.startswith("??") and not any(path.startswith(f"{d.rstrip('/')}/") for d in inputs):
            continue
        changed.append(_clean(path, 300))
    return TreeState(commit(root, sha), tuple(sorted(changed)))


def stack_at(root: Path, site: str, resolved: Resolved) -> Stack:
    """The stack as it was at a commit, upgraded from its own format to today's model."""
    rel = stack_path(root, site).relative_to(root)
    shown = f"{rel}@{resolved.label}"
    data = show(root, resolved.commit.sha, str(rel))
    if data is None:
        added = git(root, "log", "--diff-filter=A", "--format=%h %cI", "--", str(rel)).stdout.split("\n")
        first = [line for line in added if line.strip()]
        since = f" (it was added in {first[-1]})" if first else " (no commit has it)"
        raise ConfigError([Problem(shown, "", f"no such stack file at that revision{since}")])
    if len(data) > MAX_BYTES:
        raise ConfigError([Problem(shown, "", f"larger than {MAX_BYTES // 2**20} MiB")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(shown, "", f"not UTF-8 text (byte {exc.start})")]) from None
    positions = Positions()
    return parse_stack(parse_yaml(text, shown, positions), site, root / rel, shown, positions=positions, history=True)
