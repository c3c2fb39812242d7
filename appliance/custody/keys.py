"""Key custody on the central (format: docs/keys-format.md).

`<data_dir>/keys/` holds:

- the archive key pair (X25519). The public half, `archive.pub`, goes to every camera
  node, which seals each segment key to it. The secret half is written nowhere in
  clear: only wrapped in the key slots of `slots.json`, one per Director passphrase
  (Argon2id) and one for the recovery code printed once at setup. Opening a slot
  ("unsealing") is the only way to review or export recorded footage.
- the appliance signing key (Ed25519, `signing.key`, 0600): signs audit checkpoints
  and export manifests unattended, so it is protected by file permissions only.
- the live-view key (X25519, `live.key`, 0600): the central always holds it, so live
  view works while the archive is sealed.

Login passphrases are hashed separately (`hash_passphrase`): a login record that IT
resets can never open the archive, because no slot is wrapped by a login record.
"""
from __future__ import annotations

import base64
import json
import secrets
import shutil
import stat
import sys
import tempfile
import threading
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.public
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils
from nacl.pwhash import argon2id

from appliance.formats.canonical import canonical_json
from appliance.errors import ArchiveSealed, KeyStoreError, WeakPassphrase, WrongPassphrase, WrongRecoveryCode
from appliance.fsutil import atomic_write, durable_rename, fsync_dir

__all__ = [
    "ARGON2_OPSLIMIT",
    "ARGON2_MEMLIMIT",
    "MIN_PASSPHRASE_CHARS",
    "KeyStore",
    "ArchiveCustody",
    "hash_passphrase",
    "verify_passphrase",
    "ed25519_public_pem",
    "format_recovery_code",
    "normalize_recovery_code",
]

# Argon2id limits for both the archive slots and login hashes. PyNaCl's default is
# SENSITIVE (1 GiB): far too much for a Pi. 3 passes over 64 MiB took 0.13 s on the
# development machine; see docs/keys-format.md for the Pi estimate and how to measure.
# Each slot stores its own limits, so they can change later without breaking old slots.
ARGON2_OPSLIMIT = 3
ARGON2_MEMLIMIT = 64 * 1024 * 1024
# Refuse slots that ask for more than this (a tampered slots.json must not be able to
# make an unseal attempt take the appliance's memory or minutes of CPU).
_MAX_OPSLIMIT = 16
_MAX_MEMLIMIT = 1024 * 1024 * 1024
MIN_PASSPHRASE_CHARS = 8

SLOTS_FORMAT = "custodian-keyslots"
SLOTS_VERSION = 1
_PERSON_PASSPHRASE = b"custodian-slot1"  # BLAKE2b personalisation (<= 16 bytes)
_PERSON_RECOVERY = b"custodian-rcvy1"
_PERSON_CHECK = b"custodian-rchk1"

# Ed25519 SubjectPublicKeyInfo DER prefix (RFC 8410): SEQUENCE { SEQUENCE { OID
# 1.3.101.112 }, BIT STRING { 32 bytes } }.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RECOVERY_DATA_SYMBOLS = 28  # 140 random bits
_RECOVERY_CHECK_SYMBOLS = 2  # 10-bit typo check
_RECOVERY_GROUP = 5


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _blake2b(data: bytes, *, key: bytes, salt: bytes = b"", person: bytes = b"") -> bytes:
    return nacl.hash.blake2b(
        data, digest_size=32, key=key, salt=salt, person=person, encoder=nacl.encoding.RawEncoder
    )


def _passphrase_bytes(passphrase: str) -> bytes:
    # NFC, so the same passphrase typed on two keyboards gives the same bytes.
    if not isinstance(passphrase, str):
        raise TypeError("a passphrase is a str")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _check_new_passphrase(passphrase: str) -> None:
    if len(unicodedata.normalize("NFC", passphrase)) < MIN_PASSPHRASE_CHARS:
        raise WeakPassphrase(
            f"a passphrase needs at least {MIN_PASSPHRASE_CHARS} characters"
        )


# --- PEM ---------------------------------------------------------------------------


def ed25519_public_pem(raw_public_key: bytes) -> str:
    """An Ed25519 public key (32 raw bytes) as a SubjectPublicKeyInfo PEM block."""
    if len(raw_public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    body = base64.b64encode(ED25519_SPKI_PREFIX + raw_public_key).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


# --- login passphrases (not the archive) ----------------------------------------------


def hash_passphrase(passphrase: str) -> str:
    """A login record's passphrase hash (Argon2id, `$argon2id$...` string)."""
    return argon2id.str(
        _passphrase_bytes(passphrase), opslimit=ARGON2_OPSLIMIT, memlimit=ARGON2_MEMLIMIT
    ).decode("ascii")


def verify_passphrase(passphrase_hash: str, passphrase: str) -> bool:
    """True if `passphrase` matches; False on any mismatch or malformed hash."""
    try:
        return argon2id.verify(passphrase_hash.encode("ascii"), _passphrase_bytes(passphrase))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError, UnicodeError):
        return False


# --- recovery codes ------------------------------------------------------------------


def _recovery_check(data_symbols: str) -> str:
    digest = nacl.hash.blake2b(
        data_symbols.encode("ascii"), digest_size=2, person=_PERSON_CHECK,
        encoder=nacl.encoding.RawEncoder,
    )
    bits = int.from_bytes(digest, "big") >> 6  # 10 bits
    return _CROCKFORD[bits >> 5] + _CROCKFORD[bits & 31]


def _new_recovery_code() -> str:
    value = secrets.randbits(5 * _RECOVERY_DATA_SYMBOLS)
    data = "".join(
        _CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(_RECOVERY_DATA_SYMBOLS))
    )
    return data + _recovery_check(data)


def format_recovery_code(symbols: str) -> str:
    """`XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX` (six groups of five)."""
    return "-".join(symbols[i : i + _RECOVERY_GROUP] for i in range(0, len(symbols), _RECOVERY_GROUP))


def normalize_recovery_code(code: str) -> str:
    """The 30 symbols of a typed recovery code, or WrongRecoveryCode if mistyped.

    Case, spaces and hyphens are ignored; I and L read as 1, O as 0 (Crockford).
    """
    cleaned = "".join(ch for ch in code.upper() if ch not in "- \t\r\n")
    cleaned = cleaned.translate(str.maketrans("ILO", "110"))
    n = _RECOVERY_DATA_SYMBOLS + _RECOVERY_CHECK_SYMBOLS
    if len(cleaned) != n or any(ch not in _CROCKFORD for ch in cleaned):
        raise WrongRecoveryCode(f"a recovery code is {n} letters and digits in six groups of five")
    data, check = cleaned[:_RECOVERY_DATA_SYMBOLS], cleaned[_RECOVERY_DATA_SYMBOLS:]
    if not secrets.compare_digest(_recovery_check(data), check):
        raise WrongRecoveryCode("this recovery code has a typo: check each group against the printout")
    return cleaned


# --- key slots -------------------------------------------------------------------------


def _slot_binding(archive_pub: bytes, slot: dict) -> bytes:
    """What a slot's wrapping key is bound to: editing any of it breaks the slot."""
    bound = {"archive_public_key": _b64(archive_pub), "type": slot["type"], "kdf": slot["kdf"]}
    if "user" in slot:
        bound["user"] = slot["user"]
    return canonical_json(bound)


def _wrapping_key(archive_pub: bytes, slot: dict, secret: bytes) -> bytes:
    """secret: the passphrase's bytes, or the normalized recovery code's bytes."""
    kdf = slot["kdf"]
    salt = _unb64(kdf["salt"])
    if slot["type"] == "passphrase":
        ops, mem = kdf["opslimit"], kdf["memlimit"]
        if kdf.get("name") != "argon2id13" or not (
            isinstance(ops, int) and isinstance(mem, int)
            and argon2id.OPSLIMIT_MIN <= ops <= _MAX_OPSLIMIT
            and argon2id.MEMLIMIT_MIN <= mem <= _MAX_MEMLIMIT
        ):
            raise KeyStoreError(f"passphrase slot for {slot.get('user')!r} has unusable KDF settings")
        stretched = argon2id.kdf(
            32, secret, salt, opslimit=ops, memlimit=mem, encoder=nacl.encoding.RawEncoder
        )
        return _blake2b(_slot_binding(archive_pub, slot), key=stretched, person=_PERSON_PASSPHRASE)
    if slot["type"] == "recovery":
        if kdf.get("name") != "blake2b-256":
            raise KeyStoreError("recovery slot has unusable KDF settings")
        # The code has 140 random bits: no stretching needed.
        return _blake2b(_slot_binding(archive_pub, slot), key=secret, salt=salt, person=_PERSON_RECOVERY)
    raise KeyStoreError(f"unknown key slot type {slot['type']!r}")


def _new_slot(archive_sk: nacl.public.PrivateKey, kind: str, secret: bytes, user: str | None) -> dict:
    salt = nacl.utils.random(16)
    if kind == "passphrase":
        kdf = {"name": "argon2id13", "opslimit": ARGON2_OPSLIMIT, "memlimit": ARGON2_MEMLIMIT, "salt": _b64(salt)}
    else:
        kdf = {"name": "blake2b-256", "salt": _b64(salt)}
    slot: dict[str, Any] = {"type": kind, "kdf": kdf}
    if user is not None:
        slot["user"] = user
    key = _wrapping_key(bytes(archive_sk.public_key), slot, secret)
    slot["created"] = _now()
    slot["wrapped"] = _b64(bytes(nacl.secret.SecretBox(key).encrypt(bytes(archive_sk))))
    return slot


def _open_slot(archive_pub: bytes, slot: dict, secret: bytes) -> nacl.public.PrivateKey | None:
    key = _wrapping_key(archive_pub, slot, secret)
    try:
        raw = nacl.secret.SecretBox(key).decrypt(_unb64(slot["wrapped"]))
    except nacl.exceptions.CryptoError:
        return None
    sk = nacl.public.PrivateKey(raw)
    if bytes(sk.public_key) != archive_pub:
        raise KeyStoreError("a key slot holds a key that is not this archive's key: slots.json was altered")
    return sk


def _check_user(user: str) -> None:
    if not isinstance(user, str) or not user or user != user.strip():
        raise ValueError("a slot's user name is a non-empty string without surrounding spaces")


# --- the key store ------------------------------------------------------------------------


class KeyStore:
    """The key files under `<data_dir>/keys/`. Create once with `KeyStore.create`."""

    ARCHIVE_PUB = "archive.pub"
    SLOTS = "slots.json"
    SIGNING_KEY = "signing.key"
    SIGNING_PUB = "signing.pub"
    SIGNING_PEM = "signing.pub.pem"
    LIVE_KEY = "live.key"
    LIVE_PUB = "live.pub"

    def __init__(self, data_dir: str | Path):
        self.dir = Path(data_dir) / "keys"
        if not (self.dir / self.SLOTS).is_file() or not (self.dir / self.ARCHIVE_PUB).is_file():
            raise KeyStoreError(f"no archive keys in {self.dir}: run the appliance setup first")
        self._lock = threading.Lock()
        self._signing: nacl.signing.SigningKey | None = None
        self._live: nacl.public.PrivateKey | None = None

    # -- creation

    @staticmethod
    def exists(data_dir: str | Path) -> bool:
        return (Path(data_dir) / "keys").exists()

    @classmethod
    def create(cls, data_dir: str | Path, director_user: str, director_passphrase: str) -> str:
        """Generate every key, wrap the archive key for the Director and a recovery
        code, and return the recovery code (formatted). It is shown once; nothing
        stores it. Refuses if keys already exist: replacing the archive key would
        orphan every recorded segment.
        """
        _check_user(director_user)
        _check_new_passphrase(director_passphrase)
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        final = data_dir / "keys"
        if final.exists():
            raise KeyStoreError(f"{final} already exists: keys are created once")
        for stale in data_dir.glob(".tmp-keys-*"):  # an earlier create that crashed
            shutil.rmtree(stale, ignore_errors=True)

        archive = nacl.public.PrivateKey.generate()
        signing = nacl.signing.SigningKey.generate()
        live = nacl.public.PrivateKey.generate()
        code = _new_recovery_code()
        slots = {
            "format": SLOTS_FORMAT,
            "version": SLOTS_VERSION,
            "archive_public_key": _b64(bytes(archive.public_key)),
            "slots": [
                _new_slot(archive, "passphrase", _passphrase_bytes(director_passphrase), director_user),
                _new_slot(archive, "recovery", code.encode("ascii"), None),
            ],
        }
        # Build the whole directory aside, then rename it into place: a crash leaves
        # either no keys at all or all of them.
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-keys-", dir=data_dir))  # mode 0700
        try:
            atomic_write(tmp / cls.ARCHIVE_PUB, bytes(archive.public_key), mode=0o644)
            atomic_write(tmp / cls.SLOTS, _slots_bytes(slots), mode=0o600)
            atomic_write(tmp / cls.SIGNING_KEY, bytes(signing), mode=0o600)
            atomic_write(tmp / cls.SIGNING_PUB, bytes(signing.verify_key), mode=0o644)
            atomic_write(tmp / cls.SIGNING_PEM, ed25519_public_pem(bytes(signing.verify_key)).encode(), mode=0o644)
            atomic_write(tmp / cls.LIVE_KEY, bytes(live), mode=0o600)
            atomic_write(tmp / cls.LIVE_PUB, bytes(live.public_key), mode=0o644)
            durable_rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(final)
        return format_recovery_code(code)

    # -- public keys and unattended keys

    def _read_exact(self, name: str, size: int, *, secret: bool = False) -> bytes:
        path = self.dir / name
        try:
            if secret:
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    raise KeyStoreError(
                        f"{path} can be read by other users (mode {mode:04o}): run chmod 600 {path}"
                    )
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyStoreError(f"key file {path} is missing") from None
        if len(data) != size:
            raise KeyStoreError(f"key file {path} is {len(data)} bytes, expected {size}")
        return data

    def archive_public_key(self) -> nacl.public.PublicKey:
        """The key camera nodes seal segment keys to (checked against slots.json)."""
        self._load_slots()
        return nacl.public.PublicKey(self._archive_pub())

    def signing_key(self) -> nacl.signing.SigningKey:
        if self._signing is None:
            key = nacl.signing.SigningKey(self._read_exact(self.SIGNING_KEY, 32, secret=True))
            if bytes(key.verify_key) != self._read_exact(self.SIGNING_PUB, 32):
                raise KeyStoreError(f"{self.dir / self.SIGNING_PUB} does not match signing.key")
            self._signing = key
        return self._signing

    def verify_key(self) -> nacl.signing.VerifyKey:
        return nacl.signing.VerifyKey(self._read_exact(self.SIGNING_PUB, 32))

    def signing_public_pem(self) -> str:
        return ed25519_public_pem(self._read_exact(self.SIGNING_PUB, 32))

    def live_key(self) -> nacl.public.PrivateKey:
        if self._live is None:
            self._live = nacl.public.PrivateKey(self._read_exact(self.LIVE_KEY, 32, secret=True))
        return self._live

    def live_public_key(self) -> nacl.public.PublicKey:
        return nacl.public.PublicKey(self._read_exact(self.LIVE_PUB, 32))

    # -- slots

    def _load_slots(self) -> dict:
        path = self.dir / self.SLOTS
        try:
            doc = json.loads(path.read_bytes())
            if not isinstance(doc, dict) or doc.get("format") != SLOTS_FORMAT or not isinstance(doc.get("slots"), list):
                raise ValueError("not a key slot file")
            if doc.get("version") != SLOTS_VERSION:
                raise KeyStoreError(f"{path} is format version {doc.get('version')}; this Custodian reads {SLOTS_VERSION}")
            recorded = _unb64(doc.get("archive_public_key", ""))
        except FileNotFoundError:
            raise KeyStoreError(f"{path} is missing") from None
        except (ValueError, TypeError) as e:
            raise KeyStoreError(f"{path} is unreadable: {e}") from None
        if recorded != self._archive_pub():
            raise KeyStoreError(f"{path} belongs to a different archive key than archive.pub")
        return doc

    def _save_slots(self, doc: dict) -> None:
        atomic_write(self.dir / self.SLOTS, _slots_bytes(doc), mode=0o600)

    def slots(self) -> list[dict]:
        """What a slot list shows: type, user, created, KDF settings (never the wrap)."""
        return [
            {k: v for k, v in s.items() if k != "wrapped"} for s in self._load_slots()["slots"]
        ]

    def passphrase_users(self) -> list[str]:
        return [s["user"] for s in self._load_slots()["slots"] if s["type"] == "passphrase"]

    def _archive_pub(self) -> bytes:
        return self._read_exact(self.ARCHIVE_PUB, 32)

    def unseal_with_passphrase(self, user: str, passphrase: str) -> nacl.public.PrivateKey:
        """The archive secret key, from `user`'s passphrase slot. WrongPassphrase on
        any mismatch (unknown user, wrong passphrase, altered slot)."""
        pub = self._archive_pub()
        secret = _passphrase_bytes(passphrase)
        slots = [s for s in self._load_slots()["slots"] if s["type"] == "passphrase" and s.get("user") == user]
        if not slots:
            # Same work as a real attempt, so timing does not tell which users have a slot.
            argon2id.kdf(32, secret, b"\0" * 16, opslimit=ARGON2_OPSLIMIT, memlimit=ARGON2_MEMLIMIT)
        for slot in slots:
            sk = _open_slot(pub, slot, secret)
            if sk is not None:
                return sk
        raise WrongPassphrase("wrong passphrase: it does not open the archive key")   # the user is the session's

    def unseal_with_recovery(self, code: str) -> nacl.public.PrivateKey:
        symbols = normalize_recovery_code(code)
        pub = self._archive_pub()
        for slot in self._load_slots()["slots"]:
            if slot["type"] == "recovery":
                sk = _open_slot(pub, slot, symbols.encode("ascii"))
                if sk is not None:
                    return sk
        raise WrongRecoveryCode("this recovery code does not open the archive key")

    def _check_archive_key(self, archive_private_key: nacl.public.PrivateKey) -> None:
        if bytes(archive_private_key.public_key) != self._archive_pub():
            raise KeyStoreError("that is not this archive's secret key")

    def _put_passphrase_slot(
        self, archive_sk: nacl.public.PrivateKey, user: str, passphrase: str, *, replace: bool
    ) -> None:
        _check_user(user)
        _check_new_passphrase(passphrase)
        with self._lock:
            doc = self._load_slots()
            others = [s for s in doc["slots"] if not (s["type"] == "passphrase" and s.get("user") == user)]
            if not replace and len(others) != len(doc["slots"]):
                raise KeyStoreError(f"{user!r} already has a passphrase slot")
            doc["slots"] = others + [_new_slot(archive_sk, "passphrase", _passphrase_bytes(passphrase), user)]
            self._save_slots(doc)

    def change_passphrase(self, user: str, old_passphrase: str, new_passphrase: str) -> None:
        """Re-wrap `user`'s slot under a new passphrase. The archive key (and so all
        footage) stays the same; nothing is re-encrypted."""
        sk = self.unseal_with_passphrase(user, old_passphrase)
        self._put_passphrase_slot(sk, user, new_passphrase, replace=True)

    def reset_passphrase_slot_with_recovery(self, code: str, user: str, new_passphrase: str) -> None:
        """A forgotten Director passphrase: the recovery code opens the archive key and
        `user` gets a fresh passphrase slot. Consider `replace_recovery_code` after."""
        sk = self.unseal_with_recovery(code)
        self._put_passphrase_slot(sk, user, new_passphrase, replace=True)

    def add_passphrase_slot(self, archive_private_key: nacl.public.PrivateKey, user: str, passphrase: str) -> None:
        """A slot for another user (an acting director), made from the unsealed key."""
        self._check_archive_key(archive_private_key)
        self._put_passphrase_slot(archive_private_key, user, passphrase, replace=False)

    def remove_slot(self, user: str) -> None:
        """Remove `user`'s passphrase slot. The last passphrase slot cannot be removed
        (the recovery code alone must not become the only way in)."""
        with self._lock:
            doc = self._load_slots()
            keep = [s for s in doc["slots"] if not (s["type"] == "passphrase" and s.get("user") == user)]
            if len(keep) == len(doc["slots"]):
                raise KeyStoreError(f"{user!r} has no passphrase slot")
            if not any(s["type"] == "passphrase" for s in keep):
                raise KeyStoreError("the last passphrase slot cannot be removed")
            doc["slots"] = keep
            self._save_slots(doc)

    def replace_recovery_code(self, archive_private_key: nacl.public.PrivateKey) -> str:
        """A new recovery code (returned once); the old one stops working."""
        self._check_archive_key(archive_private_key)
        code = _new_recovery_code()
        with self._lock:
            doc = self._load_slots()
            doc["slots"] = [s for s in doc["slots"] if s["type"] != "recovery"] + [
                _new_slot(archive_private_key, "recovery", code.encode("ascii"), None)
            ]
            self._save_slots(doc)
        return format_recovery_code(code)


def _slots_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("ascii")


# --- the sealed / unsealed state -----------------------------------------------------------


class ArchiveCustody:
    """Holds the archive secret key in memory while the Director has it unsealed.

    Only two ways in: a passphrase slot, or the recovery code. Unsealing runs Argon2id
    (a fraction of a second): call it from a worker thread, not the event loop.
    `seal()` drops the key object (Python cannot promise to wipe its bytes).
    """

    def __init__(self, keystore: KeyStore):
        self.keystore = keystore
        self._lock = threading.Lock()
        self._key: nacl.public.PrivateKey | None = None
        self.unsealed_by: str | None = None
        self.unsealed_at: str | None = None

    def unseal(self, user: str, passphrase: str) -> None:
        key = self.keystore.unseal_with_passphrase(user, passphrase)
        self._set(key, user)

    def unseal_with_recovery(self, code: str) -> None:
        key = self.keystore.unseal_with_recovery(code)
        self._set(key, "recovery-code")

    def _set(self, key: nacl.public.PrivateKey, by: str) -> None:
        with self._lock:
            self._key, self.unsealed_by, self.unsealed_at = key, by, _now()

    def seal(self) -> None:
        with self._lock:
            self._key, self.unsealed_by, self.unsealed_at = None, None, None

    @property
    def is_sealed(self) -> bool:
        return self._key is None

    def private_key(self) -> nacl.public.PrivateKey:
        key = self._key
        if key is None:
            raise ArchiveSealed("the archive is sealed: the Director must unseal it to review or export footage")
        return key


# --- `python -m appliance.custody.keys bench`: measure Argon2id on this machine -------------------


def _bench() -> None:
    print(f"Argon2id, {sys.platform}, python {sys.version.split()[0]}")
    for ops, mem in [(2, 64 << 20), (ARGON2_OPSLIMIT, ARGON2_MEMLIMIT), (3, 128 << 20)]:
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            argon2id.kdf(32, b"benchmark passphrase", b"\0" * 16, opslimit=ops, memlimit=mem)
            runs.append(time.perf_counter() - t)
        mark = "  <- Custodian's setting" if (ops, mem) == (ARGON2_OPSLIMIT, ARGON2_MEMLIMIT) else ""
        print(f"  opslimit={ops} memlimit={mem >> 20} MiB: best {min(runs):.3f} s{mark}")


if __name__ == "__main__":
    if sys.argv[1:] == ["bench"]:
        _bench()
    else:
        print("usage: python -m appliance.custody.keys bench", file=sys.stderr)
        sys.exit(2)
