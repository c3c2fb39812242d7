"""Kill a real central at one exact step of an operation, as a power cut there would.

A child process opens the central on a data directory, wraps one of its writes so that the
process kills itself (SIGKILL: no `finally`, no flush, no close) right after that write, and
runs the operation. What is on disk afterwards is what such a crash leaves; the test then
opens a central on the same files and checks that it finishes or rolls back cleanly.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

_CHILD = """
import os, signal, sys
from pathlib import Path
from appliance import config
from appliance.central.daemon import Central
from appliance.custody import keys
keys.ARGON2_OPSLIMIT, keys.ARGON2_MEMLIMIT = keys.argon2id.OPSLIMIT_MIN, keys.argon2id.MEMLIMIT_MIN
data = Path(sys.argv[1])
central = Central(config.load(overrides={"central": {"data_dir": str(data), "ingest_port": 0}}), data)

def die_after(owner, name, when=lambda *args, **kwargs: True):
    real = getattr(owner, name)
    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        if when(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(owner, name, wrapped)

%s
sys.exit("the central was not killed: the operation went another way")
"""


def after_record(table: str) -> str:
    """Die right after a record is inserted into `table`."""
    return f"die_after(central.records, 'insert', lambda table, *a, **k: table == {table!r})"


def after_audit_entry(action: str) -> str:
    """Die right after the audit entry `action` is written."""
    return f"die_after(central.audit, 'append', lambda actor, action, **k: action == {action!r})"


def kill_central_at(data: Path, crash_point: str, operation: str, *argv: str) -> None:
    """Run `operation` (Python, with `central` open and `sys.argv[2:]` = argv) in a child central that
    kills itself at `crash_point` (die_after(...)); assert that it died there."""
    child = subprocess.run([sys.executable, "-c", _CHILD % f"{crash_point}\n{operation}", str(data), *argv],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr


def central_again(data: Path):
    """The central a restart opens on the same files."""
    from appliance import config
    from appliance.central.daemon import Central

    return Central(config.load(overrides={"central": {"data_dir": str(data), "ingest_port": 0}}), data)
