"""A kubeconfig, read as untrusted input before the Kubernetes client sees it.

kubectl's format (kubernetes.io, "Configure Access to Multiple Clusters"; client-go's
clientcmd/api/v1 types) lets a user entry run a program: ``exec`` (a credential plugin) and
``auth-provider`` (gcp's ``cmd-path``). A rollout reads the kubeconfig the environment points
at, so a planted or edited one would run that program as the operator. It is parsed here
against the fields aifactory uses: clusters reached over TLS with a CA, users with a client
certificate or a bearer token; a command, a field outside that list or a file above 1 MiB is one
line naming it. The client is then built from the checked document, never by re-reading the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ..errors import ConfigError, Problem
from ..fsutil import model_problems, read_user_file

KUBECONFIG_MAX = 1 << 20
_Name = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[\x21-\x7e]+$")]
_Text = Annotated[str, StringConstraints(max_length=1 << 19)]
_Url = Annotated[str, StringConstraints(pattern=r"^https?://[A-Za-z0-9._~:\[\]%-]+(/[A-Za-z0-9._~/-]*)?$")]


class _Model(BaseModel):
    # kubectl writes `extensions` anywhere; aifactory reads none of them.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Cluster(_Model):
    server: _Url
    certificate_authority: _Text | None = Field(None, alias="certificate-authority")
    certificate_authority_data: _Text | None = Field(None, alias="certificate-authority-data")
    insecure_skip_tls_verify: bool | None = Field(None, alias="insecure-skip-tls-verify")
    tls_server_name: _Name | None = Field(None, alias="tls-server-name")
    extensions: list[Any] | None = None


class User(_Model):
    client_certificate: _Text | None = Field(None, alias="client-certificate")
    client_certificate_data: _Text | None = Field(None, alias="client-certificate-data")
    client_key: _Text | None = Field(None, alias="client-key")
    client_key_data: _Text | None = Field(None, alias="client-key-data")
    token: _Text | None = None
    token_file: _Text | None = Field(None, alias="tokenFile")
    extensions: list[Any] | None = None


class Context(_Model):
    cluster: _Name
    user: _Name
    namespace: _Name | None = None
    extensions: list[Any] | None = None


class NamedCluster(_Model):
    name: _Name
    cluster: Cluster


class NamedUser(_Model):
    name: _Name
    user: User


class NamedContext(_Model):
    name: _Name
    context: Context


class Kubeconfig(_Model):
    api_version: Annotated[str, StringConstraints(pattern=r"^v1$")] | None = Field(None, alias="apiVersion")
    kind: Annotated[str, StringConstraints(pattern=r"^Config$")] | None = None
    clusters: list[NamedCluster] = Field(default_factory=list)
    users: list[NamedUser] = Field(default_factory=list)
    contexts: list[NamedContext] = Field(default_factory=list)
    current_context: _Name | None = Field(None, alias="current-context")
    preferences: dict[str, Any] | None = None
    extensions: list[Any] | None = None


_RUNS_A_COMMAND = {
    "exec": "a credential plugin runs a command",
    "auth-provider": "an auth provider can run a command (cmd-path)",
}


def _commands(doc: Any, shown: str) -> list[Problem]:
    out = []
    users = doc.get("users") if isinstance(doc, dict) else None
    for i, u in enumerate(users if isinstance(users, list) else []):
        user = u.get("user") if isinstance(u, dict) else None
        for key, why in _RUNS_A_COMMAND.items():
            if isinstance(user, dict) and key in user:
                out.append(
                    Problem(
                        shown,
                        f"users.{i}.user.{key}",
                        f"{why}; aifactory runs no command from a kubeconfig (use a client certificate or a token)",
                    )
                )
    return out


def load(path: Path, context: str) -> dict[str, Any]:
    """The checked kubeconfig as a dict for kubernetes.config.new_client_from_config_dict, for ``context``.

    Relative certificate paths are made absolute against the kubeconfig's folder, as kubectl reads them.
    """
    shown = f"kubeconfig {path}"
    data = read_user_file(path, KUBECONFIG_MAX, shown)
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([Problem(shown, "", f"not a kubeconfig ({' '.join(str(exc).split())[:200]})")]) from None
    problems = _commands(doc, shown)
    if problems:
        raise ConfigError(problems)
    try:
        checked = Kubeconfig.model_validate(doc if doc is not None else {})
    except ValidationError as exc:
        raise ConfigError(model_problems(exc, shown)) from None
    if context not in {c.name for c in checked.contexts}:
        raise ConfigError([Problem(shown, "contexts", f"no context {context!r} (kubernetes.context of the stack)")])
    out = checked.model_dump(by_alias=True, exclude_none=True)
    base = path.resolve().parent
    for section, inner, keys in (
        ("clusters", "cluster", ("certificate-authority",)),
        ("users", "user", ("client-certificate", "client-key", "tokenFile")),
    ):
        for entry in out.get(section, []):
            for key in keys:
                if key in entry[inner] and not Path(entry[inner][key]).is_absolute():
                    entry[inner][key] = str(base / entry[inner][key])
    return out
