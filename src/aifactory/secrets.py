"""Pulumi's passphrase secrets provider, for machines without the Pulumi CLI.

Stack files keep credentials as ``secure: v1:<nonce>:<ciphertext>`` values. The format is
Pulumi's own (pkg/secrets/passphrase and sdk/go/common/resource/config/crypt.go): the stack's
``encryptionsalt`` is ``v1:<base64 8-byte salt>:<the word "pulumi" encrypted>``, the key is
PBKDF2-HMAC-SHA256 of the passphrase over that salt, 1,000,000 iterations, 32 bytes, and each
value is AES-256-GCM under a fresh 12-byte nonce. Values written here decrypt under
``pulumi config get --show-secrets`` and the reverse.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_ITERATIONS = 1_000_000
_B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_CIPHERTEXT = re.compile(rf"v1:({_B64}):({_B64})", re.ASCII)
_SALT_STATE = re.compile(rf"v1:({_B64}):(v1:{_B64}:{_B64})", re.ASCII)
_VERIFY_PLAINTEXT = "pulumi"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_SALT_BYTES = 8


class SecretsError(Exception):
    pass


def _parts(value: object) -> tuple[bytes, bytes] | None:
    """Nonce and sealed bytes of a v1 ciphertext, or None when the value is not one."""
    if not isinstance(value, str) or len(value) > 65536:
        return None
    m = _CIPHERTEXT.fullmatch(value)
    if not m:
        return None
    nonce, sealed = base64.b64decode(m.group(1)), base64.b64decode(m.group(2))
    if len(nonce) != _NONCE_BYTES or len(sealed) < _TAG_BYTES:
        return None
    return nonce, sealed


def is_ciphertext(value: object) -> bool:
    """A Pulumi v1 ciphertext: a 12-byte AES-GCM nonce and at least a 16-byte tag, both base64."""
    return _parts(value) is not None


def salt_problem(state: object) -> str | None:
    """Why an encryptionsalt is not Pulumi's passphrase state (v1:<8-byte salt>:<ciphertext>), or None."""
    if not isinstance(state, str):
        return "not a string"
    m = _SALT_STATE.fullmatch(state)
    if not m:
        return "malformed: Pulumi writes v1:<base64 8-byte salt>:v1:<nonce>:<ciphertext>"
    if len(base64.b64decode(m.group(1))) != _SALT_BYTES:
        return "malformed: the salt is not 8 bytes"
    if not is_ciphertext(m.group(2)):
        return "malformed: the check value is not a v1 ciphertext"
    return None


def read_passphrase(env: dict[str, str] | None = None) -> str:
    """The passphrase the way the Pulumi CLI finds it: the variable, else the file it names."""
    env = dict(os.environ) if env is None else env
    if "PULUMI_CONFIG_PASSPHRASE" in env:
        value = env["PULUMI_CONFIG_PASSPHRASE"]
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SecretsError("PULUMI_CONFIG_PASSPHRASE is not UTF-8 text") from None
        return value
    path = env.get("PULUMI_CONFIG_PASSPHRASE_FILE", "")
    if path:
        try:
            return read_passphrase_file(Path(path))
        except OSError as exc:
            raise SecretsError(f"cannot read PULUMI_CONFIG_PASSPHRASE_FILE: {exc.strerror}") from None
    raise SecretsError("set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE")


# A passphrase is a line of text; a file far larger is the wrong file (or /dev/zero).
PASSPHRASE_MAX = 64 << 10


def read_passphrase_file(path: Path) -> str:
    from .errors import ConfigError
    from .fsutil import read_user_file

    try:
        data = read_user_file(path, PASSPHRASE_MAX, f"PULUMI_CONFIG_PASSPHRASE_FILE ({path})")
    except ConfigError as exc:
        raise SecretsError(f"{exc.problems[0].file}: {exc.problems[0].message}") from None
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise SecretsError(f"the passphrase file is not UTF-8 text (byte {exc.start})") from None


@dataclass(frozen=True)
class Crypter:
    # Key material never shows in a repr, a log line or a traceback's locals.
    key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "Crypter(key=[secret])"

    @classmethod
    def new(cls, passphrase: str) -> tuple[Crypter, str]:
        """A crypter under a fresh salt, and the encryptionsalt line for the stack file."""
        salt = os.urandom(8)
        crypter = cls(_derive(passphrase, salt))
        state = f"v1:{base64.b64encode(salt).decode()}:{crypter.encrypt(_VERIFY_PLAINTEXT)}"
        return crypter, state

    @classmethod
    def from_state(cls, passphrase: str, state: str) -> Crypter:
        problem = salt_problem(state)
        if problem:
            raise SecretsError(f"encryptionsalt is {problem}")
        _, salt_b64, check = state.split(":", 2)
        crypter = cls(_derive(passphrase, base64.b64decode(salt_b64)))
        if crypter.decrypt(check) != _VERIFY_PLAINTEXT:
            raise SecretsError("incorrect passphrase")
        return crypter

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode(), None)
        return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}"

    def decrypt(self, ciphertext: str) -> str:
        parts = _parts(ciphertext)
        if parts is None:
            raise SecretsError("value is not a v1 ciphertext")
        try:
            return AESGCM(self.key).decrypt(parts[0], parts[1], None).decode("utf-8")
        except InvalidTag:
            raise SecretsError("incorrect passphrase") from None
        except UnicodeDecodeError:
            raise SecretsError("the decrypted value is not UTF-8 text") from None


@functools.lru_cache(maxsize=32)
def verifies(passphrase: str, state: str) -> bool:
    """Whether a stack's encryptionsalt opens with this passphrase (memoised: PBKDF2 costs about 0.5 s)."""
    try:
        Crypter.from_state(passphrase, state)
    except SecretsError:
        return False
    return True


def _derive(passphrase: str, salt: bytes) -> bytes:
    try:
        secret = passphrase.encode("utf-8")
    except UnicodeEncodeError:
        raise SecretsError("the passphrase is not UTF-8 text") from None
    return hashlib.pbkdf2_hmac("sha256", secret, salt, _ITERATIONS, dklen=32)
