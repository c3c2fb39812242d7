"""A small synchronous client of the central's local API (Unix socket).

Used by the CLI (`custodian call`) and by the terminal UI's workers. Standard
library only: the TUI must not pull keys, TinyDB or archive code into its process.
"""
from __future__ import annotations

import http.client
import json
import socket


class ApiError(Exception):
    def __init__(self, code: str, message: str, clause: str | None = None, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.clause = clause
        self.field = field      # the argument at fault, when the central names one


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class ApiClient:
    def __init__(self, socket_path: str, timeout: float = 120.0):
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self.token: str | None = None
        self.user: dict | None = None

    def call(self, op: str, args: dict | None = None, *, background: bool = False) -> dict:
        """Call one operation. `background`: a screen refreshing itself, not a person's
        action; the central then does not count it as activity (the idle rule)."""
        request = {"op": op, "args": args or {}, "token": self.token}
        if background:
            request["background"] = True
        body = json.dumps(request).encode()
        status, answer = self._request("POST", "/v1/call", body)
        if not isinstance(answer, dict):
            raise ApiError("internal", f"the central answered {status} without JSON")
        if not answer.get("ok"):
            err = answer.get("error", {})
            raise ApiError(err.get("code", "error"), err.get("message", "unknown error"), err.get("clause"),
                           err.get("field"))
        return answer["result"]

    def operations(self) -> dict:
        """Every operation: its roles, summary, argument labels and secret arguments."""
        status, answer = self._request("GET", "/v1/operations")
        if not isinstance(answer, dict):
            raise ApiError("internal", f"the central answered {status} without JSON")
        return answer

    def _request(self, method: str, path: str, body: bytes | None = None):
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            try:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
            except (FileNotFoundError, ConnectionRefusedError):
                raise ApiError("unavailable", f"the central is not running (no API at {self.socket_path})") from None
            except PermissionError:
                raise ApiError("unavailable", f"no permission to reach {self.socket_path}: "
                                              "join the 'custodian' group") from None
            except (OSError, http.client.HTTPException) as e:   # reset, timed out, cut off mid-answer
                raise ApiError("unavailable", f"the central is not answering ({e.__class__.__name__})") from None
        finally:
            conn.close()
        try:
            return response.status, json.loads(payload)
        except ValueError:
            return response.status, None

    def login(self, user: str, passphrase: str) -> dict:
        result = self.call("session.login", {"user": user, "passphrase": passphrase})
        self.token = result["token"]
        self.user = result["user"]
        return result

    def logout(self) -> None:
        if self.token:
            try:
                self.call("session.logout")
            finally:
                self.token = None
                self.user = None
