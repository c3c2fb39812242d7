"""Crash-safe file writing: write, fsync the file, rename, fsync the directory.

The order matters (Moonfire NVR's rule): a reader either sees the old file or the
whole new one, and once we return the new one survives a power cut.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def durable_rename(src: Path | str, dst: Path | str) -> None:
    """Rename an already fsync'd file into place and make the rename durable."""
    dst = Path(dst)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if Path(src).parent != dst.parent:
        fsync_dir(Path(src).parent)


def remove_temp_leftovers(directory: Path | str) -> list[Path]:
    """Delete temp files a crash left behind in `directory` (not recursive)."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        if entry.name.startswith(TEMP_PREFIX) and entry.is_file():
            entry.unlink()
            removed.append(entry)
    return removed


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes (a segment's chain digest, a deletion receipt's digest)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
