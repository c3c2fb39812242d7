"""What a node is: its signing key, its name, and the central's public keys.

`node.key` (0600) never leaves the node; `node.json` holds the name, the central's URL,
the archive's public key (segments are sealed to it) and the central's live key
(control answers come sealed with it). The node holds no secret that opens footage.
Also the node's data-directory lock: one process per directory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.public
import nacl.signing


from appliance.datalock import NODE_LOCK, DataDirLock, lock_data_dir
from appliance.errors import ConfigError
from appliance.fsutil import atomic_write



def lock_node_dir(data_dir: Path) -> DataDirLock:
    """Own a node's data directory (appliance/datalock.py), or raise naming who does."""
    if not (Path(data_dir) / "node.json").exists():
        raise ConfigError(f"{data_dir} holds no node identity: run 'custodian node init' first")
    return lock_data_dir(data_dir, NODE_LOCK, "camera node")


@dataclass
class NodeIdentity:
    """What a node keeps: its signing key, the archive and live public keys, its name."""

    data_dir: Path
    name: str
    signing_key: nacl.signing.SigningKey
    archive_key: nacl.public.PublicKey
    central_url: str
    live_key: nacl.public.PublicKey | None = None   # the central's live-view key (control channel)

    @staticmethod
    def init(data_dir: Path, name: str, archive_key_hex: str, central_url: str,
             live_key_hex: str | None = None) -> "NodeIdentity":
        data_dir = Path(data_dir)
        if (data_dir / "node.key").exists():
            raise ConfigError(f"{data_dir} already holds a node identity")
        try:
            archive_key = nacl.public.PublicKey(bytes.fromhex(archive_key_hex))
        except (ValueError, TypeError, nacl.exceptions.CryptoError):
            raise ConfigError("the archive key must be 64 hex digits (32 bytes)") from None
        live_key = _live_key(live_key_hex)
        data_dir.mkdir(parents=True, exist_ok=True)
        key = nacl.signing.SigningKey.generate()
        atomic_write(data_dir / "node.key", key.encode(), mode=0o600)
        NodeIdentity.write_meta(data_dir, name, archive_key_hex, central_url, live_key_hex)
        return NodeIdentity(data_dir, name, key, archive_key, central_url, live_key)

    @staticmethod
    def write_meta(data_dir: Path, name: str, archive_key_hex: str, central_url: str,
                   live_key_hex: str | None) -> None:
        """node.json: what the node knows of the central (written last: it completes the identity)."""
        atomic_write(Path(data_dir) / "node.json", json.dumps({
            "name": name, "archive_key": archive_key_hex, "central_url": central_url, "live_key": live_key_hex,
        }, indent=2).encode(), mode=0o644)

    @staticmethod
    def load(data_dir: Path) -> "NodeIdentity":
        data_dir = Path(data_dir)
        try:
            meta = json.loads((data_dir / "node.json").read_text())
            key = nacl.signing.SigningKey((data_dir / "node.key").read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{data_dir} holds no node identity: run 'custodian node init' first") from None
        return NodeIdentity(data_dir, meta["name"], key,
                            nacl.public.PublicKey(bytes.fromhex(meta["archive_key"])), meta["central_url"],
                            _live_key(meta.get("live_key")))

    @property
    def public_key_hex(self) -> str:
        return self.signing_key.verify_key.encode().hex()


def _live_key(hex_key: str | None) -> nacl.public.PublicKey | None:
    if hex_key is None:
        return None
    try:
        return nacl.public.PublicKey(bytes.fromhex(hex_key))
    except (ValueError, TypeError, nacl.exceptions.CryptoError):
        raise ConfigError("the central's live key must be 64 hex digits (32 bytes)") from None
