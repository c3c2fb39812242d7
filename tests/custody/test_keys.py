"""Key custody: slots, recovery code, file modes, PEM, nothing secret in clear."""
from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import nacl.public
import nacl.signing
import pytest

from appliance.custody import keys as keys_mod
from appliance.errors import (
    ArchiveSealed,
    KeyStoreError,
    WeakPassphrase,
    WrongPassphrase,
    WrongRecoveryCode,
)
from appliance.custody.keys import (
    ARGON2_MEMLIMIT,
    ARGON2_OPSLIMIT,
    ArchiveCustody,
    KeyStore,
    ed25519_public_pem,
    hash_passphrase,
    normalize_recovery_code,
    verify_passphrase,
)

PASS = "correct horse battery"


@pytest.fixture
def store(tmp_path):
    code = KeyStore.create(tmp_path, "director", PASS)
    return KeyStore(tmp_path), code, tmp_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_and_round_trips(store):
    ks, code, data = store
    assert re.fullmatch(r"([0-9A-HJKMNP-TV-Z]{5}-){5}[0-9A-HJKMNP-TV-Z]{5}", code)
    pub = ks.archive_public_key()
    sk = ks.unseal_with_passphrase("director", PASS)
    assert sk.public_key == pub
    # a segment key sealed to the archive's public key opens with the unsealed key
    sealed = nacl.public.SealedBox(pub).encrypt(b"segment key")
    assert nacl.public.SealedBox(sk).decrypt(sealed) == b"segment key"
    # the recovery code opens the same key, however it is typed
    sloppy = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert bytes(ks.unseal_with_recovery(code)) == bytes(sk)
    assert bytes(ks.unseal_with_recovery(sloppy)) == bytes(sk)
    # signing and live keys
    message = b"checkpoint"
    ks.verify_key().verify(ks.signing_key().sign(message))
    assert ks.signing_key().verify_key == ks.verify_key()
    assert ks.live_key().public_key == ks.live_public_key()
    assert bytes(ks.live_key()) != bytes(sk)
    # the slot list shows who can unseal, and only the Director and the recovery code can
    assert [(s["type"], s.get("user")) for s in ks.slots()] == [("passphrase", "director"), ("recovery", None)]
    assert all("wrapped" not in s for s in ks.slots())
    slot = ks.slots()[0]
    assert slot["kdf"]["opslimit"] == ARGON2_OPSLIMIT and slot["kdf"]["memlimit"] == ARGON2_MEMLIMIT
    assert len(base64.b64decode(slot["kdf"]["salt"])) == 16
    # recovery code has >= 128 random bits (28 data symbols x 5 bits) plus a check
    assert len(normalize_recovery_code(code)) == 30 and 28 * 5 >= 128


def test_wrong_passphrase_or_user(store):
    ks, _, data = store
    for user, passphrase in [("director", "wrong passphrase"), ("director", PASS + " "),
                             ("it", PASS), ("Director", PASS), ("", PASS)]:
        with pytest.raises(WrongPassphrase) as info:
            ks.unseal_with_passphrase(user, passphrase)
        assert info.value.code == "wrong_passphrase"


def test_slot_is_bound_to_its_user_name(store):
    ks, _, data = store
    path = data / "keys" / "slots.json"
    doc = json.loads(path.read_text())
    doc["slots"][0]["user"] = "it"  # someone edits the slot to claim it for IT
    path.write_text(json.dumps(doc))
    with pytest.raises(WrongPassphrase):
        ks.unseal_with_passphrase("it", PASS)
    with pytest.raises(WrongPassphrase):
        ks.unseal_with_passphrase("director", PASS)


def test_swapped_archive_public_key_is_refused(store):
    ks, _, data = store
    # someone replaces archive.pub so that cameras would encrypt to *their* key
    (data / "keys" / "archive.pub").write_bytes(bytes(nacl.public.PrivateKey.generate().public_key))
    with pytest.raises(KeyStoreError, match="different archive key"):
        ks.archive_public_key()
    with pytest.raises(KeyStoreError):
        ks.unseal_with_passphrase("director", PASS)


def test_wrong_recovery_code(store):
    ks, code, _ = store
    other = KeyStore.create(ks.dir.parent / "other", "director", PASS)  # well-formed, wrong archive
    with pytest.raises(WrongRecoveryCode, match="does not open") as info:
        ks.unseal_with_recovery(other)
    assert info.value.code == "wrong_recovery_code"
    symbols = list(normalize_recovery_code(code))
    symbols[7] = "2" if symbols[7] != "2" else "3"  # one mistyped symbol
    with pytest.raises(WrongRecoveryCode, match="typo"):
        ks.unseal_with_recovery("".join(symbols))
    with pytest.raises(WrongRecoveryCode):
        ks.unseal_with_recovery(code[:-1])
    with pytest.raises(WrongRecoveryCode):
        ks.unseal_with_recovery(PASS)


def test_change_passphrase_keeps_the_same_archive_key(store):
    ks, code, data = store
    before_pub = (data / "keys" / "archive.pub").read_bytes()
    sk = ks.unseal_with_passphrase("director", PASS)
    with pytest.raises(WrongPassphrase):
        ks.change_passphrase("director", "not the passphrase", "new passphrase 2")
    ks.change_passphrase("director", PASS, "new passphrase 2")
    with pytest.raises(WrongPassphrase):
        ks.unseal_with_passphrase("director", PASS)
    assert bytes(ks.unseal_with_passphrase("director", "new passphrase 2")) == bytes(sk)
    assert bytes(ks.unseal_with_recovery(code)) == bytes(sk)
    assert (data / "keys" / "archive.pub").read_bytes() == before_pub
    with pytest.raises(WeakPassphrase):
        ks.change_passphrase("director", "new passphrase 2", "short")


def test_forgotten_passphrase_reset_with_recovery_code(store):
    ks, code, _ = store
    sk = ks.unseal_with_passphrase("director", PASS)
    with pytest.raises(WrongRecoveryCode):
        ks.reset_passphrase_slot_with_recovery(KeyStore.create(ks.dir.parent / "x", "d", PASS), "director", "reset passphrase")
    ks.reset_passphrase_slot_with_recovery(code, "director", "reset passphrase")
    with pytest.raises(WrongPassphrase):
        ks.unseal_with_passphrase("director", PASS)
    assert bytes(ks.unseal_with_passphrase("director", "reset passphrase")) == bytes(sk)
    # and a fresh recovery code replaces the used one
    new_code = ks.replace_recovery_code(sk)
    with pytest.raises(WrongRecoveryCode):
        ks.unseal_with_recovery(code)
    assert bytes(ks.unseal_with_recovery(new_code)) == bytes(sk)


def test_acting_director_slot_add_and_remove(store):
    ks, _, _ = store
    sk = ks.unseal_with_passphrase("director", PASS)
    with pytest.raises(KeyStoreError, match="not this archive"):
        ks.add_passphrase_slot(nacl.public.PrivateKey.generate(), "acting", "acting passphrase")
    ks.add_passphrase_slot(sk, "acting", "acting passphrase")
    with pytest.raises(KeyStoreError, match="already"):
        ks.add_passphrase_slot(sk, "acting", "another passphrase")
    assert ks.passphrase_users() == ["director", "acting"]
    assert bytes(ks.unseal_with_passphrase("acting", "acting passphrase")) == bytes(sk)
    ks.remove_slot("acting")
    with pytest.raises(WrongPassphrase):
        ks.unseal_with_passphrase("acting", "acting passphrase")
    with pytest.raises(KeyStoreError, match="last passphrase slot"):
        ks.remove_slot("director")
    with pytest.raises(KeyStoreError, match="no passphrase slot"):
        ks.remove_slot("nobody")


def test_file_modes(store):
    ks, _, data = store
    k = data / "keys"
    assert _mode(k) == 0o700
    for secret in ("signing.key", "live.key", "slots.json"):
        assert _mode(k / secret) == 0o600, secret
    for public in ("archive.pub", "signing.pub", "signing.pub.pem", "live.pub"):
        assert _mode(k / public) == 0o644, public
    # slot rewrites keep 0600
    ks.change_passphrase("director", PASS, "new passphrase 2")
    assert _mode(k / "slots.json") == 0o600
    # a signing key others can read is refused, like ssh refuses a loose private key
    os.chmod(k / "signing.key", 0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        KeyStore(data).signing_key()


def test_pem_loads_with_openssl_and_verifies_a_signature(store, tmp_path):
    ks, _, data = store
    pem = ks.signing_public_pem()
    assert (data / "keys" / "signing.pub.pem").read_text() == pem
    assert pem == ed25519_public_pem(bytes(ks.verify_key()))
    pem_path = tmp_path / "pub.pem"
    pem_path.write_text(pem)
    out = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pem_path), "-noout"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    msg, sig = tmp_path / "msg", tmp_path / "msg.sig"
    msg.write_bytes(b'{"hello":"world"}')
    sig.write_bytes(ks.signing_key().sign(msg.read_bytes()).signature)
    out = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem_path), "-rawin",
                          "-in", str(msg), "-sigfile", str(sig)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "Verified Successfully" in out.stdout, out.stdout + out.stderr


def _forms(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), secret.hex().upper().encode(),
            base64.b64encode(secret), base64.urlsafe_b64encode(secret), base64.b32encode(secret),
            base64.b64encode(secret).rstrip(b"=")]


def test_no_archive_secret_in_clear_in_any_file(store):
    ks, code, data = store
    sk = ks.unseal_with_passphrase("director", PASS)
    ks.add_passphrase_slot(sk, "acting", "acting passphrase")
    ks.change_passphrase("director", PASS, "second passphrase")
    needles = _forms(bytes(sk)) + [
        code.encode(), normalize_recovery_code(code).encode(),
        PASS.encode(), b"second passphrase", b"acting passphrase",
    ]
    files = [p for p in data.rglob("*") if p.is_file()]
    assert len(files) >= 7
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"{path} holds a secret in clear"


def test_login_hash_is_separate_from_the_archive(store):
    ks, _, _ = store
    h = hash_passphrase(PASS)
    assert h.startswith("$argon2id$") and f"m={ARGON2_MEMLIMIT // 1024},t={ARGON2_OPSLIMIT}" in h
    assert verify_passphrase(h, PASS)
    assert not verify_passphrase(h, "wrong")
    assert not verify_passphrase("not a hash", PASS)
    assert hash_passphrase(PASS) != h  # salted
    # IT resets the Director's *login* record: the new login passphrase opens nothing
    reset_login = hash_passphrase("it chose this one")
    assert verify_passphrase(reset_login, "it chose this one")
    with pytest.raises(WrongPassphrase):
        ks.unseal_with_passphrase("director", "it chose this one")
    with pytest.raises(WrongPassphrase):
        ks.unseal_with_passphrase("director", reset_login)


def test_archive_custody_seal_and_unseal(store):
    ks, code, _ = store
    custody = ArchiveCustody(ks)
    assert custody.is_sealed
    with pytest.raises(ArchiveSealed) as info:
        custody.private_key()
    assert info.value.code == "sealed"
    with pytest.raises(WrongPassphrase):
        custody.unseal("director", "nope nope nope")
    assert custody.is_sealed
    custody.unseal("director", PASS)
    assert not custody.is_sealed and custody.unsealed_by == "director"
    assert custody.private_key().public_key == ks.archive_public_key()
    custody.seal()
    assert custody.is_sealed and custody.unsealed_by is None
    with pytest.raises(ArchiveSealed):
        custody.private_key()
    custody.unseal_with_recovery(code)
    assert custody.private_key().public_key == ks.archive_public_key()


def test_create_refuses_twice_weak_or_partial(tmp_path, monkeypatch):
    with pytest.raises(KeyStoreError, match="setup"):
        KeyStore(tmp_path)
    with pytest.raises(WeakPassphrase):
        KeyStore.create(tmp_path, "director", "short")
    assert not KeyStore.exists(tmp_path)
    # a failure half way through leaves no keys directory and no temp directory
    real, calls = keys_mod.atomic_write, []

    def failing(path, data, mode=0o600):
        calls.append(path)
        if len(calls) == 4:
            raise OSError("disk full")
        real(path, data, mode)

    monkeypatch.setattr(keys_mod, "atomic_write", failing)
    with pytest.raises(OSError):
        KeyStore.create(tmp_path, "director", PASS)
    monkeypatch.undo()
    assert not KeyStore.exists(tmp_path) and not list(tmp_path.glob(".tmp-keys-*"))
    KeyStore.create(tmp_path, "director", PASS)
    with pytest.raises(KeyStoreError, match="already exists"):
        KeyStore.create(tmp_path, "director", PASS)


def test_verify_key_is_a_nacl_verify_key(store):
    ks, _, _ = store
    assert isinstance(ks.verify_key(), nacl.signing.VerifyKey)
    assert isinstance(ks.archive_public_key(), nacl.public.PublicKey)
