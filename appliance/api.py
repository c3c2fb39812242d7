"""The local API: JSON over HTTP on a Unix socket (never a network port).

    POST /v1/call   {"op": "incident.create", "args": {...}, "token": "..."}
    ->  200 {"ok": true, "result": {...}}
    ->  4xx {"ok": false, "error": {"code": "refused", "message": "...", "clause": "C9"}}

The schema of every operation is in docs/api.md. The terminal UI and `custodian
call` are the only clients. Operations run in a worker thread (they fsync, hash
passphrases and decrypt footage) so the ingest port stays responsive.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from pathlib import Path

from aiohttp import web

from . import ops as ops_mod
from .errors import CustodianError

log = logging.getLogger("custodian.api")

MAX_REQUEST_BYTES = 1024 * 1024
STATUS = {"bad_request": 400, "not_authenticated": 401, "refused": 403, "forbidden": 403,
          "not_found": 404, "sealed": 409, "wrong_passphrase": 401, "locked": 423}


def socket_path(central) -> Path:
    return Path(central.cfg.central.api_socket or central.paths.data / "api.sock")


def _peer_uid(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    except OSError:
        return None


def error_body(e: CustodianError) -> dict:
    body = {"code": e.code, "message": str(e)}
    clause = getattr(e, "clause", None)
    if clause:
        body["clause"] = clause
    return body


async def _wait_and_retry(central, body: dict, token: str | None, result: dict) -> dict:
    """A long poll: sleep (holding no thread) until the central wakes its watchers or the
    wait runs out, then ask again. Always a background call: waiting is not activity."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + float(result.get("wait") or 0)
    woken = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(woken.set)

    central.add_watcher(wake)
    try:
        while not result.get("changed") and loop.time() < deadline and not central.stopping:
            try:
                await asyncio.wait_for(woken.wait(), timeout=deadline - loop.time())
            except asyncio.TimeoutError:
                pass
            woken.clear()
            result = await asyncio.to_thread(central.call, body["op"], body.get("args"), token, True)
    finally:
        central.remove_watcher(wake)
    return result


def make_api_app(central) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)

    async def call(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"ok": False, "error": {"code": "bad_request",
                                                             "message": "the request is not JSON"}}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("op"), str):
            return web.json_response({"ok": False, "error": {"code": "bad_request",
                                                             "message": "expected {\"op\": ..., \"args\": {...}}"}},
                                     status=400)
        token = body.get("token")
        if token is not None and not isinstance(token, str):
            token = None
        background = body.get("background") is True   # a screen refreshing itself: not a person's action
        try:
            result = await asyncio.to_thread(central.call, body["op"], body.get("args"), token, background)
            operation = ops_mod.OPS.get(body["op"])
            if operation is not None and operation.waits and not result.get("changed"):
                result = await _wait_and_retry(central, body, token, result)
        except CustodianError as e:
            return web.json_response({"ok": False, "error": error_body(e)}, status=STATUS.get(e.code, 400))
        except Exception:
            log.exception("operation %s failed", body["op"])
            return web.json_response({"ok": False, "error": {"code": "internal",
                                                             "message": "internal error: see the central's log"}},
                                     status=500)
        return web.json_response({"ok": True, "result": result}, dumps=lambda o: json.dumps(o, default=str))

    async def operations(_request: web.Request) -> web.Response:
        return web.json_response({name: {"roles": list(o.roles), "summary": o.summary}
                                  for name, o in sorted(ops_mod.OPS.items())})

    @web.middleware
    async def too_large(request, handler):
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"ok": False, "error": {
                "code": "bad_request", "message": f"request larger than {MAX_REQUEST_BYTES} bytes"}}, status=413)

    app.middlewares.append(too_large)
    app.router.add_post("/v1/call", call)
    app.router.add_get("/v1/operations", operations)
    return app
