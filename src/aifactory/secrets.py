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
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_ITERATIONS = 1_000_000
_CIPHERTEXT = re.compile(r"^v1:[A-Za-z0-9+/]+={0,2}:[A-Za-z0-9+/]+={0,2}$")
_VERIFY_PLAINTEXT = "pulumi"


class SecretsError(Exception):
    pass


def is_ciphertext(value: object) -> bool:
    return isinstance(value, str) and bool(_CIPHERTEXT.match(value))


def read_passphrase(env: dict[str, str] | None = None) -> str:
    """The passphrase the way the Pulumi CLI finds it: the variable, else the file it names."""
    env = dict(os.environ) if env is None else env
    if "PULUMI_CONFIG_PASSPHRASE" in env:
        return env["PULUMI_CONFIG_PASSPHRASE"]
    path = env.get("PULUMI_CONFIG_PASSPHRASE_FILE", "")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise SecretsError(f"cannot read PULUMI_CONFIG_PASSPHRASE_FILE {path}: {exc.strerror}") from None
    raise SecretsError("set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE")


@dataclass(frozen=True)
class Crypter:
    key: bytes

    @classmethod
    def new(cls, passphrase: str) -> tuple[Crypter, str]:
        """A crypter under a fresh salt, and the encryptionsalt line for the stack file."""
        salt = os.urandom(8)
        crypter = cls(_derive(passphrase, salt))
        state = f"v1:{base64.b64encode(salt).decode()}:{crypter.encrypt(_VERIFY_PLAINTEXT)}"
        return crypter, state

    @classmethod
    def from_state(cls, passphrase: str, state: str) -> Crypter:
        parts = state.split(":", 2)
        if len(parts) != 3 or parts[0] != "v1":
            raise SecretsError("encryptionsalt is not a v1 passphrase state")
        try:
            salt = base64.b64decode(parts[1], validate=True)
        except ValueError:
            raise SecretsError("encryptionsalt has a malformed salt") from None
        crypter = cls(_derive(passphrase, salt))
        if crypter.decrypt(parts[2]) != _VERIFY_PLAINTEXT:
            raise SecretsError("incorrect passphrase")
        return crypter

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode(), None)
        return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}"

    def decrypt(self, ciphertext: str) -> str:
        if not is_ciphertext(ciphertext):
            raise SecretsError("value is not a v1 ciphertext")
        _, nonce, sealed = ciphertext.split(":")
        try:
            return AESGCM(self.key).decrypt(base64.b64decode(nonce), base64.b64decode(sealed), None).decode()
        except InvalidTag:
            raise SecretsError("incorrect passphrase") from None


def _derive(passphrase: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode(), salt, _ITERATIONS, dklen=32)
