"""How the command line reaches the central: which API socket (finding a running demo),
logging in and out, and passphrases asked for without echo, never taken from the command line.

A passphrase typed into `custodian call OP '{"passphrase": ...}'` is readable by anyone
on the machine (`ps`) and stays in shell history. So every secret argument an operation
declares (`@op(..., secrets=...)`, listed by `GET /v1/operations`) that the JSON leaves
out is asked for on the terminal, or read from a file (`--secret-file NAME=PATH`, `-`
for standard input).
"""
from __future__ import annotations

import getpass
import os
import socket
import sys
from pathlib import Path

from appliance.client import ApiClient, ApiError
from appliance.config import CentralConfig
from appliance.errors import CustodianError

DEMO_DATA = "var/demo"                     # `custodian demo`'s data directory unless --data says otherwise
DEMO_CENTRAL = Path(DEMO_DATA) / "central"


def _note(text: str) -> None:
    print(f"custodian: {text}", file=sys.stderr)


def _answers(sock: Path) -> bool:
    """Whether a process is listening on the Unix socket (a stale socket file refuses)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(sock))
        return True
    except OSError:
        return False


def find_api(args, cfg) -> str:
    """The central's API socket: --socket, the configuration, or the default data directory;
    when nothing was chosen and no central runs there, a running demo's (said on stderr)."""
    if getattr(args, "socket", None):
        return args.socket
    if cfg.central.api_socket:
        return cfg.central.api_socket
    default = Path(cfg.central.data_dir) / "api.sock"
    chosen = getattr(args, "data", None) or cfg.central.data_dir != CentralConfig.data_dir
    if chosen or _answers(default):
        return str(default)
    demo = DEMO_CENTRAL / "api.sock"
    if _answers(demo):
        _note(f"no central runs in {default.parent}; using the demo's in {DEMO_CENTRAL} "
              "(--data DIR chooses another)")
        return str(demo)
    if DEMO_CENTRAL.exists():
        raise ApiError("unavailable", f"no central runs in {default.parent}, and the demo in {DEMO_DATA} is "
                                      "not running: start it with 'make demo' (this command then finds it), "
                                      "or give --data DIR")
    raise ApiError("unavailable", f"no central runs in {default.parent} (no API at {default}): start one "
                                  "with 'custodian central serve', or give --data DIR or --socket PATH")


class Secrets:
    """Where secrets come from: files named on the command line, else the terminal (no echo)."""

    def __init__(self, files: list[str] | None = None, passphrase_file: str | None = None):
        self.files: dict[str, str] = {}
        for item in files or ():
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise CustodianError(f"--secret-file {item!r}: write NAME=PATH (PATH - for standard input)")
            self.files[name] = path
        self.passphrase_file = passphrase_file
        if [*self.files.values(), passphrase_file].count("-") > 1:
            raise CustodianError("only one secret can come from standard input")

    @staticmethod
    def _read(path: str) -> str:
        try:
            text = sys.stdin.readline() if path == "-" else Path(path).read_text()
        except OSError as e:
            raise CustodianError(f"cannot read {path}: {e.strerror}") from None
        return text.rstrip("\r\n")   # one line; the secret may hold spaces

    def _ask(self, prompt: str, hint: str, *, twice: bool = False) -> str:
        if not sys.stdin.isatty():
            raise CustodianError(f"no terminal to ask for {hint}")
        first = getpass.getpass(prompt)
        if twice and getpass.getpass("again, to be sure: ") != first:
            raise CustodianError("the two entries differ: nothing was sent")
        return first

    def login_passphrase(self, user: str, user_chosen: bool) -> str:
        if self.passphrase_file:
            return self._read(self.passphrase_file)
        env = os.environ.get("CUSTODIAN_PASSPHRASE")
        if env:
            return env
        if not user_chosen and sys.stdin.isatty():
            _note(f"logging in as {user}, your login name on this computer; --user NAME (or "
                  "CUSTODIAN_USER) logs in as another account")
        return self._ask(f"passphrase for {user}: ",
                         f"the passphrase of {user}: set CUSTODIAN_PASSPHRASE or give --passphrase-file PATH")

    def fill(self, op: str, payload: dict, info: dict) -> dict:
        """`payload` with every secret `op` declares that it leaves out: from a file or asked for."""
        labels = info.get("labels", {})
        filled = dict(payload)
        for name, path in self.files.items():
            if not any(name in group for group in info.get("secrets", [])):
                raise CustodianError(f"{op} takes no secret named {name!r}")
            filled[name] = self._read(path)
        for group in info.get("secrets", []):
            if any(name in filled for name in group):
                continue
            name = group[0]
            label = labels.get(name, name)
            filled[name] = self._ask(f"{label} ({name}) for {op}: ",
                                     f"{label} ({name}): give --secret-file {name}=PATH (- for standard input)",
                                     twice=name in info.get("new_secrets", []))
        return filled


def login(args, client: ApiClient, secrets: Secrets) -> None:
    chosen = getattr(args, "user", None) or os.environ.get("CUSTODIAN_USER")
    user = chosen or getpass.getuser()
    client.login(user, secrets.login_passphrase(user, bool(chosen)))
