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


def test_no_repr_shows_key_material():
    crypter = Crypter.from_state(LAB_PASSPHRASE, load_stack(ROOT, "lab").encryptionsalt)
    assert crypter.key.hex() not in repr(crypter) and repr(crypter) == "Crypter(key=[secret])"


def test_fake_and_truncated_ciphertexts_are_not_ciphertexts():
    from aifactory.secrets import is_ciphertext, salt_problem

    assert not is_ciphertext("v1:AAAA:AAAA")  # a 3-byte nonce, no tag
    assert not is_ciphertext("v1:AAAAAAAAAAAAAAAA:AAAA")  # a 12-byte nonce but no 16-byte tag
    assert not is_ciphertext("v1:Z05SFWJyVnPXAB79:jKXdv8Cc1kPCu34mxVZ4w6kMSMWMZWODHeBwR7+xpk8=\n")
    assert is_ciphertext("v1:Z05SFWJyVnPXAB79:jKXdv8Cc1kPCu34mxVZ4w6kMSMWMZWODHeBwR7+xpk8=")
    assert salt_problem("v1:AAAA:bad").startswith("malformed")
    assert salt_problem(load_stack(ROOT, "lab").encryptionsalt) is None


@pytest.mark.parametrize(
    ("stdin", "words"),
    [
        (b"line one\nline two\n", "more than one line"),
        (b"\xff\xfe", "not UTF-8"),
        (b"\n", "no value to encrypt"),
    ],
)
def test_secret_encrypt_refuses_what_it_cannot_take_whole(stdin, words, cli, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", LAB_PASSPHRASE)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code, out, err = cli("secret", "encrypt", "lab")
    assert (code, out) == (2, "")
    assert err.startswith("error: <stdin>: ") and words in err


def test_secret_encrypt_errors_name_the_field(cli, workdir, monkeypatch, tmp_path):
    bad = tmp_path / "pass"
    bad.write_bytes(b"\xffnot-utf8")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(bad))
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    code, _, err = cli("secret", "encrypt", "lab", root=workdir)
    assert code == 2 and "encryptionsalt: the passphrase file is not UTF-8 text" in err
    path = workdir / "stacks" / "Pulumi.lab.yaml"
    text = path.read_text()
    salt = next(line for line in text.splitlines() if line.startswith("encryptionsalt:"))
    path.write_text(text.replace(salt, "encryptionsalt: v1:!!!:v1:x:y"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", LAB_PASSPHRASE)
    code, _, err = cli("secret", "encrypt", "lab", root=workdir)
    assert code == 2 and "error: stacks/Pulumi.lab.yaml: encryptionsalt: malformed" in err


def test_secret_encrypt_refuses_the_lab_passphrase_for_a_country(cli, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", LAB_PASSPHRASE)
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    code, out, err = cli("secret", "encrypt", "za")
    assert (code, out) == (2, "")
    assert "refusing the public lab passphrase for site za" in err


# Pulumi's own test vector (pulumi/pulumi pkg/secrets/passphrase/manager_test.go at bd2962ec, 2026-03-18): the
# state its passphrase manager opens with PULUMI_CONFIG_PASSPHRASE=password and refuses with password123, and
# the state its parser rejects. The salt's ciphertext is Pulumi's own AES-256-GCM output, not ours.
PULUMI_STATE = "v1:fozI5u6B030=:v1:F+6ZduKKd8G0/V7L:PGMFeIzwobWRKmEAzUdaQHqC5mMRIQ=="
PULUMI_BROKEN_STATE = "fozI5u6B030=:v1:F+6ZduL:PGMFeIzwobWRKmEAzUdaQHqC5mMRIQ=="


def test_pulumis_own_test_vector_opens_with_its_passphrase_and_no_other():
    from aifactory.secrets import verifies

    crypter = Crypter.from_state("password", PULUMI_STATE)
    assert verifies("password", PULUMI_STATE)
    assert not verifies("password123", PULUMI_STATE)
    with pytest.raises(SecretsError, match="incorrect passphrase"):
        Crypter.from_state("password123", PULUMI_STATE)
    with pytest.raises(SecretsError):
        Crypter.from_state("password", PULUMI_BROKEN_STATE)
    # What this crypter writes under Pulumi's state opens under Pulumi's state again, with Pulumi's key.
    assert Crypter.from_state("password", PULUMI_STATE).decrypt(crypter.encrypt("bmc")) == "bmc"
