"""`custodian`: the command line. Each subcommand is a thin layer over the core.

Commands that change records go through the running central's API (`call`,
`camera add`), because only the central daemon may open the records database.
"""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from pathlib import Path

from . import config as config_mod
from .errors import CustodianError


def _passphrase(prompt: str, *, confirm: bool = False) -> str:
    env = os.environ.get("CUSTODIAN_PASSPHRASE")
    if env:
        return env
    if not sys.stdin.isatty():
        raise CustodianError("no terminal to ask for a passphrase: set CUSTODIAN_PASSPHRASE")
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise CustodianError("the two passphrases differ")
    return first


def _load_config(args) -> config_mod.Config:
    overrides: dict = {}
    if getattr(args, "data", None):
        overrides.setdefault("central", {})["data_dir"] = str(args.data)
        overrides.setdefault("node", {})["data_dir"] = str(args.data)
    return config_mod.load(args.config, overrides)


def _socket(args, cfg) -> str:
    if getattr(args, "socket", None):
        return args.socket
    return cfg.central.api_socket or str(Path(cfg.central.data_dir) / "api.sock")


def _client(args, cfg, login: bool = True):
    from .client import ApiClient

    client = ApiClient(_socket(args, cfg))
    if login:
        user = getattr(args, "user", None) or os.environ.get("CUSTODIAN_USER") or getpass.getuser()
        client.login(user, _passphrase(f"passphrase for {user}: "))
    return client


# --------------------------------------------------------------------------- commands


def cmd_central_init(args) -> int:
    from .central import init_central

    passphrase = _passphrase(f"new passphrase for the Director ({args.director}): ", confirm=True)
    recovery = init_central(Path(args.data), args.director, passphrase)
    from .keys import KeyStore

    keys = KeyStore(args.data)
    print(f"central initialised in {args.data}")
    print(f"archive public key (give it to each camera node): {bytes(keys.archive_public_key()).hex()}")
    print(f"live-view public key (give it to each camera node too): {bytes(keys.live_public_key()).hex()}")
    print()
    print("RECOVERY CODE (shown once; print it and keep it in the library's safe):")
    print(f"    {recovery}")
    return 0


def cmd_central_serve(args) -> int:
    from .central import run_central

    cfg = _load_config(args)
    if args.port is not None:
        cfg.central.ingest_port = args.port
    return run_central(cfg)


def cmd_central_archive_key(args) -> int:
    from .keys import KeyStore

    print(bytes(KeyStore(args.data).archive_public_key()).hex())
    return 0


def cmd_central_keys(args) -> int:
    from .keys import KeyStore

    keys = KeyStore(args.data)
    print(json.dumps({"archive_key": bytes(keys.archive_public_key()).hex(),
                      "live_key": bytes(keys.live_public_key()).hex()}, indent=2))
    return 0


def cmd_node_init(args) -> int:
    from .node import NodeIdentity

    identity = NodeIdentity.init(Path(args.data), args.name, args.archive_key, args.central, args.live_key)
    print(f"node {identity.name} initialised in {args.data}")
    print(f"node public key (enrol it on the central): {identity.public_key_hex}")
    return 0


def cmd_node_run(args) -> int:
    from .node import run_node

    cfg = _load_config(args)
    return run_node(cfg, Path(args.data) if args.data else None)


def cmd_camera_add(args) -> int:
    cfg = _load_config(args)
    client = _client(args, cfg)
    result = client.call("camera.enroll", {"camera": args.name, "key": args.key, "location": args.location,
                                          "category": args.category})
    print(json.dumps(result, indent=2))
    return 0


def cmd_segment_inspect(args) -> int:
    from .segment import read_public

    status = 0
    for path in args.files:
        try:
            info = read_public(Path(path))
            view = info.public_view()
            view["header"] = {k: v for k, v in view["header"].items() if k not in ("sealed_key", "stream_header")}
            print(json.dumps({"file": path, **view}, indent=2))
        except (OSError, CustodianError) as e:
            print(json.dumps({"file": path, "error": str(e)}), file=sys.stderr)
            status = 1
    return status


def cmd_segment_verify(args) -> int:
    from .verify import verify_segments

    key = bytes.fromhex(args.key) if args.key else None
    ok = verify_segments([Path(p) for p in args.files], node_key=key, out=sys.stdout)
    return 0 if ok else 1


def cmd_audit_verify(args) -> int:
    from .audit import verify_log
    from .keys import KeyStore

    keys = KeyStore(args.data)
    heads = []
    for path in args.node_heads or ():
        heads.extend(json.loads(Path(path).read_text()))
    report = verify_log(Path(args.data) / "audit", keys.verify_key(), heads)
    print(report.summary() if hasattr(report, "summary") else report)
    return 0 if report.ok else 1


def cmd_call(args) -> int:
    from .client import ApiError

    cfg = _load_config(args)
    try:
        payload = json.loads(args.json) if args.json else {}
    except ValueError as e:
        print(f"custodian call: the arguments are not JSON: {e}", file=sys.stderr)
        return 2
    try:
        client = _client(args, cfg, login=args.op != "session.login")
        result = client.call(args.op, payload)
    except ApiError as e:
        print(json.dumps({"ok": False, "error": {"code": e.code, "message": e.message, "clause": e.clause}}),
              file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_selftest(args) -> int:
    from hw.selftest import main as selftest_main

    return selftest_main(["--config", args.config] if args.config else [])


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(cameras=args.cameras, data=Path(args.data), headless=args.headless, seconds=args.seconds,
                    segment_seconds=args.segment_seconds)


def cmd_tui(args) -> int:
    from tui.app import run_tui

    cfg = _load_config(args)
    return run_tui(_socket(args, cfg), profile=args.profile)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="custodian", description="Video surveillance that keeps the library's policy.")
    p.add_argument("--config", help="TOML configuration file (defaults need none)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    central = sub.add_parser("central", help="the central appliance").add_subparsers(dest="sub", required=True)
    c = central.add_parser("init", help="create keys, records and the Director's account")
    c.add_argument("--data", required=True)
    c.add_argument("--director", default="director", help="the Director's user name")
    c.set_defaults(func=cmd_central_init)
    c = central.add_parser("serve", help="run the central daemon")
    c.add_argument("--data")
    c.add_argument("--port", type=int)
    c.set_defaults(func=cmd_central_serve)
    c = central.add_parser("archive-key", help="print the archive public key (for camera nodes)")
    c.add_argument("--data", required=True)
    c.set_defaults(func=cmd_central_archive_key)
    c = central.add_parser("keys", help="print the public keys a camera node needs, as JSON")
    c.add_argument("--data", required=True)
    c.set_defaults(func=cmd_central_keys)

    node = sub.add_parser("node", help="a camera node").add_subparsers(dest="sub", required=True)
    n = node.add_parser("init", help="create this node's key")
    n.add_argument("--data", required=True)
    n.add_argument("--name", required=True)
    n.add_argument("--archive-key", required=True, help="the central's archive public key, hex")
    n.add_argument("--live-key", required=True,
                   help="the central's live-view public key, hex (control channel, snapshots, live view)")
    n.add_argument("--central", default="http://127.0.0.1:8650")
    n.set_defaults(func=cmd_node_init)
    n = node.add_parser("run", help="record and upload")
    n.add_argument("--data")
    n.set_defaults(func=cmd_node_run)

    camera = sub.add_parser("camera", help="cameras (through the central's API)").add_subparsers(
        dest="sub", required=True)
    a = camera.add_parser("add", help="enrol a camera node by its public key")
    a.add_argument("name")
    a.add_argument("--key", required=True)
    a.add_argument("--location", required=True, help="where it is, e.g. 'Main entrance, facing the doors'")
    a.add_argument("--category", required=True, help="entrance, collection, seating, parking, service_desk, "
                   "corridor, exterior or other_public")
    a.add_argument("--user")
    a.add_argument("--socket")
    a.add_argument("--data")
    a.set_defaults(func=cmd_camera_add)

    segment = sub.add_parser("segment", help="segment files").add_subparsers(dest="sub", required=True)
    s = segment.add_parser("inspect", help="print the public header and trailer as JSON")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_segment_inspect)
    s = segment.add_parser("verify", help="check structure, signatures and chain")
    s.add_argument("files", nargs="+")
    s.add_argument("--key", help="the node's enrolled public key, hex (default: the key each header names)")
    s.set_defaults(func=cmd_segment_verify)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="sub", required=True)
    v = audit.add_parser("verify", help="check chain, checkpoints and node-held heads")
    v.add_argument("--data", required=True)
    v.add_argument("--node-heads", nargs="*", help="audit-heads.json files copied from camera nodes")
    v.set_defaults(func=cmd_audit_verify)

    c = sub.add_parser("call", help="call one API operation (scripts, health checks, auditors)")
    c.add_argument("op")
    c.add_argument("json", nargs="?")
    c.add_argument("--user")
    c.add_argument("--socket")
    c.add_argument("--data")
    c.set_defaults(func=cmd_call)

    t = sub.add_parser("selftest", help="on a Pi: check the camera, encoder and clock")
    t.set_defaults(func=cmd_selftest)

    d = sub.add_parser("demo", help="the whole system on this machine")
    d.add_argument("--cameras", type=int, default=2)
    d.add_argument("--data", default="var/demo")
    d.add_argument("--headless", action="store_true")
    d.add_argument("--seconds", type=float, default=60.0)
    d.add_argument("--segment-seconds", type=int, default=10)
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("tui", help="the terminal UI")
    t.add_argument("--socket")
    t.add_argument("--data")
    t.add_argument("--profile", choices=("full", "console", "serial"),
                   help="what the terminal can show (default: from TERM, COLORTERM and NO_COLOR)")
    t.set_defaults(func=cmd_tui)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .client import ApiError

    try:
        return args.func(args)
    except CustodianError as e:
        print(f"custodian: {e}", file=sys.stderr)
        return 2
    except ApiError as e:
        clause = f" (policy {e.clause})" if e.clause else ""
        print(f"custodian: {e.message}{clause} [{e.code}]", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
