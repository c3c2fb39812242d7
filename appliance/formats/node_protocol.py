"""The node protocol's pieces both ends compute (docs/node-protocol.md).

A node signs every request to the central with its Ed25519 key over METHOD, PATH,
TIME and the body's SHA-256 (`signed_message`), sent in three headers
(`signed_headers`); the central checks the same message (`central/node_channel.py`).
Images a node sends are at most `MAX_IMAGE_WIDTH` pixels wide.
"""
from __future__ import annotations

import hashlib

import nacl.exceptions
import nacl.public
import nacl.signing







HEADER_CAMERA = "X-Custodian-Camera"
HEADER_TIME = "X-Custodian-Time"
HEADER_SIGNATURE = "X-Custodian-Signature"
MAX_IMAGE_WIDTH = 320
def signed_message(method: str, path: str, time_us: int, body: bytes) -> bytes:
    """What a node signs: METHOD, PATH, TIME and the body's SHA-256, one per line."""
    return f"{method}\n{path}\n{time_us}\n{hashlib.sha256(body).hexdigest()}".encode()


def signed_headers(key: nacl.signing.SigningKey, camera: str, method: str, path: str, time_us: int,
                   body: bytes) -> dict[str, str]:
    signature = key.sign(signed_message(method, path, time_us, body)).signature
    return {HEADER_CAMERA: camera, HEADER_TIME: str(time_us), HEADER_SIGNATURE: signature.hex()}
