from __future__ import annotations

import io

import pytest

from aifactory.secrets import Crypter, SecretsError, read_passphrase
from aifactory.stackfile import load_stack

from .conftest import COUNTRY_SITES, ROOT

LAB_PASSPHRASE = (ROOT / "stacks" / "lab.passphrase").read_text().strip()


def test_lab_secrets_decrypt_with_the_documented_passphrase():
    stack = load_stack(ROOT, "lab")
    crypter = Crypter.from_state(LAB_PASSPHRASE, stack.encryptionsalt)
    assert crypter.decrypt(stack.credentials["gpu"].password_ciphertext) == "lab-bmc-password"


def test_wrong_passphrase_is_refused():
    stack = load_stack(ROOT, "lab")
    with pytest.raises(SecretsError, match="incorrect passphrase"):
        Crypter.from_state("not-the-passphrase", stack.encryptionsalt)


@pytest.mark.parametrize("site", COUNTRY_SITES)
def test_country_stacks_hold_only_ciphertext(site):
    stack = load_stack(ROOT, site)
    assert stack.encryptionsalt.startswith("v1:")
    assert set(stack.credentials) == {p.name for p in stack.site.pools}


def test_round_trip_and_fresh_nonces():
    crypter, state = Crypter.new("correct horse")
    again = Crypter.from_state("correct horse", state)
    a, b = crypter.encrypt("s3cret"), crypter.encrypt("s3cret")
    assert a != b
    assert again.decrypt(a) == again.decrypt(b) == "s3cret"


def test_passphrase_file(tmp_path):
    f = tmp_path / "p"
    f.write_text("from-file\n")
    assert read_passphrase({"PULUMI_CONFIG_PASSPHRASE_FILE": str(f)}) == "from-file"
    assert read_passphrase({"PULUMI_CONFIG_PASSPHRASE": "env", "PULUMI_CONFIG_PASSPHRASE_FILE": str(f)}) == "env"
    with pytest.raises(SecretsError):
        read_passphrase({})


def test_secret_encrypt_command(cli, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", LAB_PASSPHRASE)
    monkeypatch.setattr("sys.stdin", io.StringIO("new-bmc-password\n"))
    code, out, err = cli("secret", "encrypt", "lab")
    assert code == 0, err
    assert "new-bmc-password" not in out
    ciphertext = out.strip().removeprefix("secure: ")
    stack = load_stack(ROOT, "lab")
    assert Crypter.from_state(LAB_PASSPHRASE, stack.encryptionsalt).decrypt(ciphertext) == "new-bmc-password"


def test_secret_encrypt_with_wrong_passphrase_exits_2(cli, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "wrong")
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    code, out, err = cli("secret", "encrypt", "lab")
    assert code == 2
    assert err.strip() == "error: stacks/Pulumi.lab.yaml: encryptionsalt: incorrect passphrase"
