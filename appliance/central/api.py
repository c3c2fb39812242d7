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

from appliance.rules import registry as ops_mod
from appliance.errors import CustodianError
from appliance.errors import BadRequest

log = logging.getLogger("custodian.api")

MAX_REQUEST_BYTES = 1024 * 1024
MAX_DEPTH = 16          # no operation takes anything nested deeper than a list of rectangles

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
    for extra in ("clause", "field"):
        if getattr(e, extra, None):
            body[extra] = getattr(e, extra)
    return body


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def _depth(value) -> int:
    """How deeply `value` nests lists and objects (iteratively: a deep value must not recurse)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_call(raw: bytes) -> dict:
    """The body of POST /v1/call, or BadRequest saying why it cannot be read (never anything else)."""
    try:
        text = raw.decode("utf-8")       # JSON is UTF-8 (RFC 8259), whatever the header claims
    except UnicodeDecodeError as e:
        raise BadRequest(f"the request is not UTF-8 text (byte {e.start} cannot be read)") from None
    try:
        body = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest(f"the request nests lists or objects more than {MAX_DEPTH} levels deep") from None
    except ValueError as e:             # JSONDecodeError, NaN, an integer with thousands of digits
        raise BadRequest(f"the request is not JSON: {str(e)[:120]}") from None
    if not isinstance(body, dict) or not isinstance(body.get("op"), str):
        raise BadRequest('expected {"op": "name.verb", "args": {...}, "token": "..."}')
    if _depth(body) > MAX_DEPTH:
        raise BadRequest(f"the request nests lists or objects more than {MAX_DEPTH} levels deep")
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
            body = parse_call(await request.read())
        except BadRequest as e:
            return web.json_response({"ok": False, "error": error_body(e)}, status=400)
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
            return web.json_response({"ok": False, "error": error_body(e)}, status=e.status)
        except Exception:
            log.exception("operation %s failed", body["op"])
            return web.json_response({"ok": False, "error": {"code": "internal",
                                                             "message": "internal error: see the central's log"}},
                                     status=500)
        return web.json_response({"ok": True, "result": result}, dumps=lambda o: json.dumps(o, default=str))

    async def operations(_request: web.Request) -> web.Response:
        return web.json_response({name: {"roles": list(o.roles), "who": o.who(), "director_herself": not o.rule.acting,
                                         "own_only": o.rule.scope.what if o.rule.scope else None,
                                         "summary": o.summary, "labels": o.labels,
                                         "secrets": [list(group) for group in o.secrets],
                                         "new_secrets": list(o.new_secrets)}
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
