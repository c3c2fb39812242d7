"""Delivery: spooled segments to the central, in order, deleted only on its receipt.

Each upload is acknowledged with a receipt sealed to this node (camera, sequence,
digest, the audit log's head): nobody else on the LAN can make the node delete
footage. The audit heads it receives are kept, so a rewritten log would contradict
them (docs/audit-format.md).
"""
from __future__ import annotations

import logging

import base64
import hashlib
import http.client
import json
import threading
import time
import urllib.parse
from pathlib import Path

import nacl.exceptions
import nacl.public
import nacl.signing


from appliance.config import Config
from appliance.errors import CustodianError
from appliance.fsutil import atomic_write
from appliance.node.identity import NodeIdentity
from appliance.node.spool import Spool

log = logging.getLogger("custodian.node.upload")



HEADS_KEPT = 16


class Uploader(threading.Thread):
    """Sends spooled segments in order; deletes each only after the central acknowledges it."""

    def __init__(self, spool: Spool, identity: NodeIdentity, cfg: Config):
        super().__init__(name="uploader", daemon=True)
        self.spool = spool
        self.identity = identity
        self.cfg = cfg
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.heads_path = identity.data_dir / "audit-heads.json"
        url = urllib.parse.urlsplit(identity.central_url)
        self._host, self._port = url.hostname, url.port or 80
        self.uploaded = 0

    def run(self) -> None:
        delay = 0.5
        while not self.stopping.is_set():
            pending = self.spool.finished()
            if not pending:
                self.wake.wait(5.0)
                self.wake.clear()
                continue
            try:
                self._send(pending[0])
                delay = 0.5
            except (OSError, http.client.HTTPException, _RetryLater) as e:
                log.warning("upload of %s failed (%s); retrying in %.1fs", pending[0].name, e, delay)
            except Exception:   # noqa: BLE001  (a bug must not end the only thread that uploads)
                log.exception("upload of %s failed unexpectedly; retrying in %.1fs", pending[0].name, delay)
            else:
                continue
            self.stopping.wait(delay)
            delay = min(delay * 2, self.cfg.node.retry_max_seconds)

    def drain(self, timeout: float) -> bool:
        """Try to send everything spooled within `timeout` seconds (used at shutdown)."""
        deadline = time.monotonic() + timeout
        while self.spool.finished() and time.monotonic() < deadline:
            self.wake.set()
            time.sleep(0.1)
        return not self.spool.finished()

    def _send(self, path: Path) -> None:
        seq = int(path.name.split(".")[0])
        size = path.stat().st_size
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.cfg.node.upload_timeout,
                                          blocksize=256 * 1024)   # fewer system calls per upload
        try:
            with open(path, "rb") as f:
                body = _HashingReader(f)
                conn.request("PUT", f"/v1/segments/{self.identity.name}/{seq}", body=body,
                             headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
                response = conn.getresponse()
                payload = response.read(1024 * 1024)
        finally:
            conn.close()
        try:
            answer = json.loads(payload or b"{}")
        except (ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict):   # anything on the LAN can answer: a list, a string, HTML
            answer = {"error": payload[:200].decode(errors="replace")}
        if response.status in (200, 201):
            receipt = self._open_receipt(answer.get("receipt"), seq, body.hexdigest())
            self.spool.remove(path)
            self.uploaded += 1
            if receipt.get("audit_head"):
                self._keep_head(receipt["audit_head"])
            log.info("uploaded %s (%s)", path.name, receipt["status"])
        elif response.status in (400, 403, 409, 413):
            self.spool.reject(path, f"{response.status} {answer.get('error', '')}")
        else:
            raise _RetryLater(f"central answered {response.status} {answer.get('error', '')}")

    def _open_receipt(self, sealed: str | None, seq: int, digest: str) -> dict:
        """The central's sealed receipt for exactly this segment, or _RetryLater (keep the file)."""
        try:
            box = nacl.public.Box(self.identity.signing_key.to_curve25519_private_key(), self.identity.live_key)
            receipt = json.loads(box.decrypt(base64.b64decode(sealed or "", validate=True)))
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
            raise _RetryLater(f"an acknowledgement without a valid receipt from the central ({e}): "
                              "keeping the segment") from None
        if not isinstance(receipt, dict) or (receipt.get("camera"), receipt.get("seq"),
                                             receipt.get("digest")) != (self.identity.name, seq, digest):
            raise _RetryLater("the receipt is for another segment: keeping this one")
        return receipt

    def _keep_head(self, head: dict) -> None:
        """Keep the latest audit checkpoints the central sent: a rewritten log would contradict them."""
        try:
            heads = json.loads(self.heads_path.read_text())
        except (FileNotFoundError, ValueError):
            heads = []
        if heads and heads[-1] == head:
            return
        heads = (heads + [head])[-HEADS_KEPT:]
        atomic_write(self.heads_path, json.dumps(heads).encode(), mode=0o644)


class _HashingReader:
    """A file for http.client to send that hashes what it reads (no second pass over the file)."""

    def __init__(self, f):
        self._f = f
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class _RetryLater(CustodianError):
    pass
