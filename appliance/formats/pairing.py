"""Enrolment by pairing code: a flashed camera joins the central without keys typed by hand.

IT asks the central for an invitation (`camera.invite`: the camera's name, category
and location, checked as `camera.enroll` checks them, C6) and gets a one-time code,
valid for 24 hours, stored on the central only as a hash. `flash.sh --invite CODE`
puts the code on the card. At first boot the node makes its own Ed25519 key (it never
leaves the node), fetches the central's public keys, and sends its public key with the
code, sealed to the central's live key and signed by the new key. The central checks
the code, enrols the camera (`pending_placement`: it records nothing until the
Director approves its placement, C6), spends the code and answers, sealed to the node.

Both sides show the same pairing fingerprint, derived from the node's key and the
central's two keys: a machine in between that handed the node other keys, or the
central another node key, shows up as two different fingerprints for IT to see.

Refusals (each audited): no invitation, a spent, replaced or expired code, a wrong
code (five per invitation, then the invitation is cancelled and the Director
alerted), a request that is not sealed or signed as it should be. Guessing is rate
limited per address. The protocol: docs/node-protocol.md, "Enrolment".
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
