"""Configuration: TOML read with tomllib; every key has a default, so no file is needed.

Data lives under ./var/ unless told otherwise. A node reads [node] and [camera];
the central reads [central]. Unknown keys are an error: a typo must not silently
leave a safety setting at its default.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw.settings import CameraSettings

from appliance.errors import ConfigError


@dataclass
class NodeConfig:
    name: str = "camera-1"
    data_dir: str = "var/node"
    central_url: str = ""               # empty: the URL given at `custodian node init`
    segment_seconds: int = 60
    chunk_bytes: int = 256 * 1024       # plaintext buffered before one encrypted chunk
    chunk_seconds: float = 1.0          # ...or this much video, whichever comes first
    fsync_seconds: float = 2.0          # bound on what a power cut can lose mid-segment
    # Oldest unsent segments are evicted (and logged) past this, or past 80% of the room the
    # spool has on its filesystem (what it holds plus what is free), whichever is smaller.
    spool_max_bytes: int = 2 * 1024**3
    upload_timeout: float = 60.0
    retry_max_seconds: float = 30.0
    # control channel (appliance/node/control.py, docs/node-protocol.md)
    control_seconds: float = 2.0        # how often the node asks the central for status, masks, live views
    view_check_seconds: int = 600       # a fresh snapshot this often, for the central's view-change check (C6)
    live_interval_seconds: float = 1.0  # one live frame per this many seconds while a live view is open (C8)


@dataclass
class CentralConfig:
    data_dir: str = "var/central"
    ingest_host: str = "0.0.0.0"
    ingest_port: int = 8650
    api_socket: str = ""                # default: <data_dir>/api.sock
    max_segment_bytes: int = 512 * 1024**2
    retention_days: int = 30
    disk_reserve_bytes: int = 2 * 1024**3
    # Telling the Director at once (appliance/central/notify.py): a command and/or the library's SMTP server.
    notify_command: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "custodian@localhost"
    notify_email: str = ""


@dataclass
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    camera: CameraSettings = field(default_factory=CameraSettings)
    central: CentralConfig = field(default_factory=CentralConfig)


def _fill(cls, section: str, values: dict[str, Any]):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"[{section}]: unknown setting(s) {', '.join(sorted(unknown))}")
    obj = cls()
    for key, value in values.items():
        default = getattr(obj, key)
        # An int setting takes a whole number only: a float would reach places that refuse
        # one (a Pi's encoder fields are C ints) long after the node has started.
        if type(default) is int and isinstance(value, float):
            raise ConfigError(f"[{section}] {key}: expected a whole number, got {value!r}")
        if isinstance(default, bool) != isinstance(value, bool) or (
            isinstance(default, (int, float)) and not isinstance(value, (int, float))
        ) or (isinstance(default, str) and not isinstance(value, str)):
            raise ConfigError(f"[{section}] {key}: expected {type(default).__name__}, got {value!r}")
        setattr(obj, key, value)
    return obj


def load(path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    sections = {"node": NodeConfig, "camera": CameraSettings, "central": CentralConfig}
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(sorted(unknown))}")
    return Config(**{name: _fill(cls, name, raw.get(name, {})) for name, cls in sections.items()})
