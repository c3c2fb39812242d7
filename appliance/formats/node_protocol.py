"""The node's side of the control channel (docs/node-protocol.md), and the camera's gate.

The node has no open port: it asks the central, every `control_seconds`, what it
may do (placement status, privacy masks, whether a snapshot or live frames are
wanted), and sends images when asked. Every request is signed by the node's key;
every answer is sealed by the central's live key to this node, so a machine on the
LAN can neither read the answers nor forge one (a forged answer could lift the
privacy masks, C6).

Pieces, from the camera outwards:

- `LatestGop` keeps the access units since the last keyframe in RAM (bounded).
  Every frame the backend produces goes through it.
- `CameraGate` sits between the backend and the `Recorder`: frames always feed
  the tap, but segments are written only while the central says the placement is
  approved (C6: a new camera does not record until the Director approves it).
- `render_gray` decodes the tap's GOP through an ffmpeg pipe into a small grey
  image (never a file) for snapshots and live view; images leave the node sealed
  to the central's live key (C4).
- `CameraRunner` owns the backend and its watchdog and restarts them when the
  privacy masks change (masks are drawn before encoding, so a change needs a
  new encoder pipeline).
- `NodeControl` is the polling thread; `NodeService` wires everything together
  for `custodian node run` (and for the tests).
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
