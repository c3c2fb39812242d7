"""One owner per data directory: an exclusive `flock` taken before anything in it is touched.

Two processes on one directory lose footage: two nodes write the same sequence
numbers into one spool, and one deletes what the other is still writing. So a
central, a camera node and a demo each lock their data directory first, and a
second one refuses at once, naming the process that holds it, having touched
nothing (not even the lock file's contents: the holder's pid and command stay).

The kernel releases the lock when the holder exits, however it exits (kill -9
included): there is never a stale lock to clean up by hand. Lock files are never
deleted (deleting one would let two processes lock two different files).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from appliance.errors import ConfigError

# The lock file of each kind of data directory.
CENTRAL_LOCK = "central.lock"
NODE_LOCK = "node.lock"
DEMO_LOCK = "demo.lock"


class DirectoryInUse(ConfigError):
    """Another process owns this data directory."""


def _command_of(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return command[:200] or None


class DataDirLock:
    """Holds `<directory>/<name>` locked for as long as this object is open (or the process lives)."""

    def __init__(self, directory: Path | str, name: str, what: str):
        self.directory = Path(directory)
        self.path = self.directory / name
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        # O_CREAT without O_TRUNC: a refused process must not wipe the holder's name.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DirectoryInUse(f"{self.directory} is in use by {holder}: stop it first, "
                                 f"or give this {self.what} another data directory") from None
        except BaseException:
            os.close(fd)
            raise
        me = os.getpid()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{me} {self.what}: {_command_of(me) or '?'}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing the only descriptor releases the flock
            self._fd = None

    __del__ = release   # an object dropped without release() must not keep the directory

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DataDirLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """'a camera node (pid 1234: python -m appliance.cli node run)', from what the holder wrote."""
    text = os.pread(fd, 1024, 0).decode(errors="replace").strip()
    pid_text, _, rest = text.partition(" ")
    if not pid_text.isdigit():
        return "another process (it has not said which yet)"
    pid = int(pid_text)
    what, _, recorded = rest.partition(": ")
    command = _command_of(pid) or recorded or "?"
    return f"a {what or 'process'} (pid {pid}: {command})"


def lock_data_dir(directory: Path | str, name: str, what: str) -> DataDirLock:
    """Lock `directory` (which must exist) for `what` ("central", "camera node", "demo"), or raise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory} does not exist")
    return DataDirLock(directory, name, what).acquire()


def probe(directory: Path | str, name: str, what: str) -> None:
    """Raise DirectoryInUse if someone holds `directory`'s lock now; take nothing, create nothing."""
    path = Path(directory) / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DirectoryInUse(f"{directory} is in use by {_read_holder(fd)}: stop it first, "
                                 f"or give this {what} another data directory") from None
    finally:
        os.close(fd)
