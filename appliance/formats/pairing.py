"""Pairing codes and the pairing fingerprint (docs/node-protocol.md, "Enrolment").

A flashed camera enrols with a one-time code IT got from `camera.invite`. Both ends
need the same code normalisation (`normalise_code`, `format_code`), the hash the central
keeps instead of the code (`code_hash`), the enrolment routes, and the fingerprint both
sides show for IT to compare (`pairing_fingerprint`, over the node's key and the
central's two public keys): a machine in between shows up as two different fingerprints.
"""
from __future__ import annotations

import hashlib





CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"   # Crockford's base 32: no I, L, O, U
CODE_LENGTH = 12                                     # 60 bits, shown as XXXX-XXXX-XXXX
MAX_BODY = 4096
INVITE_FILE = "invite"              # in the node's data directory; setup moves it there from the card
KEYS_PATH = "/v1/enrol/keys"
ENROL_ROUTE = "/v1/enrol/{camera}"


def normalise_code(text: str) -> str:
    """What IT typed, as the central hashes it: case, dashes and spaces do not matter,
    and the letters people confuse with digits read as those digits."""
    cleaned = str(text).upper().replace("-", "").replace(" ", "").translate(str.maketrans("OIL", "011"))
    if len(cleaned) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in cleaned):
        raise ValueError(f"a pairing code is {CODE_LENGTH} letters and digits, like 7K3Q-9XWP-2DMF")
    return cleaned


def format_code(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def code_hash(camera: str, code: str) -> str:
    """How the central keeps a code: bound to the camera's name, never the code itself."""
    return hashlib.sha256(f"custodian-invite-v1\0{camera}\0{normalise_code(code)}".encode()).hexdigest()


def pairing_fingerprint(node_key: bytes, archive_key: bytes, live_key: bytes) -> str:
    """64 bits of SHA-256 over the node's key and the central's two keys, as XXXX-XXXX-XXXX-XXXX."""
    digest = hashlib.sha256(b"custodian-pairing-v1" + node_key + archive_key + live_key).hexdigest()[:16].upper()
    return "-".join(digest[i:i + 4] for i in range(0, 16, 4))


# --------------------------------------------------------------------------- the operation (IT)
