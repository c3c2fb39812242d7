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

from appliance import config as config_mod
from appliance.cli_access import DEMO_DATA, Secrets, find_api, login
from hw.settings import SettingsError

from appliance.errors import CustodianError, EnrolmentRefused
from appliance.wording import when


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


def _client(args, cfg, log_in: bool = True):
    from appliance.client import ApiClient

    client = ApiClient(find_api(args, cfg))
    if log_in:
        login(args, client, Secrets(passphrase_file=getattr(args, "passphrase_file", None)))
    return client


# --------------------------------------------------------------------------- commands


def cmd_central_init(args) -> int:
    from appliance.central.daemon import init_central

    passphrase = _passphrase(f"new passphrase for the Director ({args.director}): ", confirm=True)
    recovery = init_central(Path(args.data), args.director, passphrase)
    from appliance.custody.keys import KeyStore

    keys = KeyStore(args.data)
    print(f"central initialised in {args.data}")
    print(f"archive public key (give it to each camera node): {bytes(keys.archive_public_key()).hex()}")
    print(f"live-view public key (give it to each camera node too): {bytes(keys.live_public_key()).hex()}")
    print()
    print("RECOVERY CODE (shown once; print it and keep it in the library's safe):")
    print(f"    {recovery}")
    print()
    # What a newcomer cannot guess: the login name, and that IT needs an account of its own.
    print(f"The Director logs in as '{args.director}'. Next: 'custodian central serve --data {args.data}'; then the "
          f"Director reads and acknowledges the policy (custodian tui, or 'custodian call policy.text' and "
          f"'policy.acknowledge') and gives IT an account: custodian call --data {args.data} --user "
          f"{args.director} user.create '{{\"name\": \"NAME\", \"role\": \"it\"}}' (it asks for a "
          f"temporary passphrase)")
    return 0


def cmd_central_serve(args) -> int:
    from appliance.central.daemon import run_central

    cfg = _load_config(args)
    if args.port is not None:
        cfg.central.ingest_port = args.port
    return run_central(cfg)


def cmd_central_archive_key(args) -> int:
    from appliance.custody.keys import KeyStore

    print(bytes(KeyStore(args.data).archive_public_key()).hex())
    return 0


def cmd_central_keys(args) -> int:
    from appliance.custody.keys import KeyStore

    import hashlib

    keys = KeyStore(args.data)
    # The fingerprint goes to recipients of evidence packages, by another channel than the package.
    print(json.dumps({"archive_key": bytes(keys.archive_public_key()).hex(),
                      "live_key": bytes(keys.live_public_key()).hex(),
                      "appliance_key_sha256": hashlib.sha256(bytes(keys.verify_key())).hexdigest()}, indent=2))
    return 0


def cmd_node_init(args) -> int:
    from appliance.node.identity import NodeIdentity

    identity = NodeIdentity.init(Path(args.data), args.name, args.archive_key, args.central, args.live_key)
    print(f"node {identity.name} initialised in {args.data}")
    print(f"node public key (enrol it on the central): {identity.public_key_hex}")
    return 0


def cmd_node_run(args) -> int:
    from appliance.node.service import run_node

    cfg = _load_config(args)
    return run_node(cfg, Path(args.data) if args.data else None)


def cmd_camera_add(args) -> int:
    cfg = _load_config(args)
    client = _client(args, cfg)
    try:
        result = client.call("camera.enroll", {"camera": args.name, "key": args.key, "location": args.location,
                                              "category": args.category})
    finally:
        client.logout()
    print(json.dumps(result, indent=2))
    return 0


def cmd_camera_invite(args) -> int:
    cfg = _load_config(args)
    client = _client(args, cfg)
    try:
        result = client.call("camera.invite", {"camera": args.name, "location": args.location,
                                              "category": args.category})
    finally:
        client.logout()
    print(f"pairing code for camera {result['camera']}: {result['code']}  "
          f"(valid until {when(result['expires_at'])}, once)")
    print(f"flash its card with: {result['next']}")
    print("at first boot the camera enrols with it; compare the pairing fingerprint in its log with the "
          "central's camera screen")
    return 0


def cmd_segment_inspect(args) -> int:
    from appliance.formats.segment import read_public

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
    from appliance.formats.chain import verify_segments

    key = bytes.fromhex(args.key) if args.key else None
    ok = verify_segments([Path(p) for p in args.files], node_key=key, out=sys.stdout)
    return 0 if ok else 1


def cmd_audit_verify(args) -> int:
    from appliance.custody.audit import verify_log
    from appliance.custody.keys import KeyStore

    keys = KeyStore(args.data)
    heads = []
    for path in args.node_heads or ():
        heads.extend(json.loads(Path(path).read_text()))
    report = verify_log(Path(args.data) / "audit", keys.verify_key(), heads)
    print(report.summary() if hasattr(report, "summary") else report)
    return 0 if report.ok else 1


def cmd_call(args) -> int:
    from appliance.client import ApiError

    cfg = _load_config(args)
    try:
        payload = json.loads(args.json) if args.json else {}
    except ValueError as e:
        print(f"custodian call: the arguments are not JSON: {e}", file=sys.stderr)
        return 2
    if not isinstance(payload, dict):
        print("custodian call: the arguments must be a JSON object, e.g. '{\"user\": \"sam\"}'", file=sys.stderr)
        return 2
    secrets = Secrets(args.secret_file, args.passphrase_file)
    public = args.op == "session.login"
    client = None
    try:
        client = _client(args, cfg, log_in=False)
        info = client.operations().get(args.op, {})
        payload = secrets.fill(args.op, payload, info)    # before logging in: a typo costs no login
        if not public:
            login(args, client, secrets)
        result = client.call(args.op, payload)
    except ApiError as e:
        error = {"code": e.code, "message": e.message, "clause": e.clause}
        if e.field:
            error["field"] = e.field
        if e.code in NEXT_STEPS:
            error["next"] = NEXT_STEPS[e.code]
        print(json.dumps({"ok": False, "error": error}), file=sys.stderr)
        return 1
    finally:
        if client is not None and not public and args.op != "session.logout":
            try:
                client.logout()     # one call, one session: nothing left open behind a script
            except ApiError:
                pass
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_export_build(args) -> int:
    """Start a release's package build through the API and show its progress until it ends."""
    import time

    cfg = _load_config(args)
    client = _client(args, cfg)
    payload = {"release": args.release, "to": str(Path(args.to).absolute()), "medium": args.medium,
               "taken_by": args.taken_by, "encrypt": args.encrypt, "label": args.label,
               "stills": [{"camera": c, "at": t} for c, t in (_pair(s, "--still") for s in args.still)],
               "redactions": [{"camera": c, "box": [int(v) for v in box.split(",")]}
                              for c, box in (_pair(r, "--redact") for r in args.redact)]}
    try:
        started = client.call("release.build", payload)
        build = started["build"]
        if started.get("passphrase"):
            print(f"passphrase for the encrypted package (shown once; give it to the recipient by another channel):\n"
                  f"    {started['passphrase']}", flush=True)
        shown = 0
        tty = sys.stdout.isatty()
        while True:
            for step, done, _seconds in build["history"][shown:]:
                line = f"[{min(99, 100 * done // max(1, build['total_bytes'])):3d}%] {step}"
                print(("\r" + line.ljust(72)) if tty else line, end="" if tty else "\n", flush=True)
            shown = len(build["history"])
            if build["state"] != "running":
                break
            time.sleep(args.poll)
            build = client.call("release.build_status", {"build": build["build"]})["build"]
    finally:
        client.logout()
    if tty:
        print()
    if build["state"] == "failed":
        print(f"custodian: the build failed: {build['error']}", file=sys.stderr)
        return 1
    result = build["result"]
    print(f"[100%] built {result['package']}")
    print(f"manifest SHA-256 {result['manifest_sha256']}; {result['segments']} segments, {result['clips']} clip(s), "
          f"{result['gaps']} gap(s) listed")
    return 0


def _pair(text: str, flag: str) -> tuple[str, str]:
    camera, sep, value = text.partition("=")
    if not sep or not camera or not value:
        raise CustodianError(f"{flag} takes CAMERA=VALUE, not {text!r}")
    return camera, value


def cmd_export_verify(args) -> int:
    from appliance.formats.export_package import PackageFault, pem_public_key, verify_package

    path = Path(args.package)
    passphrase = None
    if path.is_file():
        passphrase = os.environ.get("CUSTODIAN_EXPORT_PASSPHRASE") or (
            getpass.getpass("the package's passphrase: ") if sys.stdin.isatty() else None)
    try:
        pinned = pem_public_key(Path(args.key).read_bytes(), args.key).encode() if args.key else None
        verify_package(path, passphrase=passphrase, pinned_key=pinned, say=lambda line: print(f"ok: {line}"))
    except PackageFault as e:
        print(f"FAULT: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_selftest(args) -> int:
    from hw.selftest import report

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = _load_config(args)
    return report(cfg.camera, cfg.node.data_dir, seconds=args.seconds)


def _demo_cameras(text: str) -> int:
    from appliance.demo import DEMO_CAMERAS

    if not text.isdigit() or not 1 <= int(text) <= len(DEMO_CAMERAS):
        raise argparse.ArgumentTypeError(f"{text!r}: the demo has 1 to {len(DEMO_CAMERAS)} cameras")
    return int(text)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
        return value
    return parse


def cmd_demo(args) -> int:
    from appliance.demo import run_demo

    return run_demo(cameras=args.cameras, data=Path(args.data), headless=args.headless, seconds=args.seconds,
                    segment_seconds=args.segment_seconds)


def cmd_tui(args) -> int:
    from tui.app import run_tui

    cfg = _load_config(args)
    return run_tui(find_api(args, cfg), profile=args.profile)


def _access_options(parser) -> None:
    """How a command reaches the central's API and whom it logs in as."""
    parser.add_argument("--user", help="the account to log in as (default: CUSTODIAN_USER, else your login "
                        "name on this computer)")
    parser.add_argument("--passphrase-file", metavar="PATH", help="read the login passphrase from PATH "
                        "(- for standard input) instead of asking or CUSTODIAN_PASSPHRASE")
    parser.add_argument("--socket", help="the central's API socket")
    parser.add_argument("--data", help="the central's data directory (its API socket is in it)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="custodian", description="Video surveillance that keeps the library's policy.")
    p.add_argument("--config", help="TOML configuration file (defaults need none)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v: progress; -vv: debug (ffmpeg's output)")
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
    c = central.add_parser("keys", help="print the public keys a camera node needs, and the appliance key's "
                           "fingerprint for package recipients, as JSON")
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
    _access_options(a)
    a.set_defaults(func=cmd_camera_add)

    a = camera.add_parser("invite", help="a one-time pairing code for a camera to be flashed (flash.sh --invite)")
    a.add_argument("name")
    a.add_argument("--location", required=True, help="where it will be, e.g. 'Main entrance, facing the doors'")
    a.add_argument("--category", required=True, help="as for 'camera add'")
    _access_options(a)
    a.set_defaults(func=cmd_camera_invite)

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

    export = sub.add_parser("export", help="evidence packages").add_subparsers(dest="sub", required=True)
    e = export.add_parser("build", help="build a registered release onto a medium (through the central's API)")
    e.add_argument("release", help="the release id, e.g. rel-000001")
    e.add_argument("--to", required=True, help="a directory on the appliance: the mounted medium")
    e.add_argument("--medium", required=True, help="what the medium is, e.g. 'USB stick, SanDisk 32 GB, #4411'")
    e.add_argument("--taken-by", required=True, help="who takes the medium, e.g. 'Det. R. Lane, Chariton PD'")
    e.add_argument("--encrypt", action="store_true", help="one AES-256 ZIP; the passphrase is shown once")
    e.add_argument("--label", action="store_true", help="burn the release id and CONFIDENTIAL into the pictures "
                   "(re-encodes)")
    e.add_argument("--still", action="append", default=[], metavar="CAMERA=TIME", help="a PNG still (repeatable)")
    e.add_argument("--redact", action="append", default=[], metavar="CAMERA=X,Y,W,H",
                   help="a black box over part of a camera's picture (repeatable; re-encodes)")
    e.add_argument("--poll", type=float, default=0.5, help=argparse.SUPPRESS)
    _access_options(e)
    e.set_defaults(func=cmd_export_build)
    e = export.add_parser("verify", help="check a package with nothing but the package (no key, no records)")
    e.add_argument("package", help="the package folder, or its .zip (passphrase from CUSTODIAN_EXPORT_PASSPHRASE "
                   "or a prompt)")
    e.add_argument("--key", help="the appliance's public key PEM you expect (as the library published it)")
    e.set_defaults(func=cmd_export_verify)

    c = sub.add_parser("call", help="call one API operation (scripts, health checks, auditors)",
                       description="Log in, call one operation, log out. Secret arguments (passphrases, "
                       "the recovery code) left out of the JSON are asked for without echo, or read with "
                       "--secret-file: never put them on the command line, where ps and history show them.")
    c.add_argument("op", help="the operation, e.g. user.unlock (docs/api.md lists them)")
    c.add_argument("json", nargs="?", help="its arguments as a JSON object, e.g. '{\"user\": \"sam\"}'")
    c.add_argument("--secret-file", action="append", metavar="NAME=PATH",
                   help="read secret argument NAME from the file PATH (- for standard input); repeatable")
    _access_options(c)
    c.set_defaults(func=cmd_call)

    t = sub.add_parser("selftest", help="on a Pi: check the camera, encoder, card and clock")
    t.add_argument("--seconds", type=float, default=3.0,
                   help="record at least this long (default 3), and until three segment switches")
    t.set_defaults(func=cmd_selftest)

    d = sub.add_parser(
        "demo", help="the whole system on this machine",
        description="Run the whole system on this machine: a central and synthetic cameras (ffmpeg test "
                    "pictures) as real processes on 127.0.0.1, one demo account per role, then the terminal "
                    "UI. Demo data only, never a real installation.",
        epilog="The demo accounts and their passphrases are printed at start. Logs: DIR/central.log and "
               "DIR/node-CAMERA.log. One demo per data directory: a second one on the same DIR refuses "
               "and names the first. Closing the terminal (SIGHUP) or SIGTERM stops everything the demo "
               "started.")
    d.add_argument("--cameras", type=_demo_cameras, default=2, metavar="N",
                   help="how many synthetic cameras to run, 1 to 5 (default: 2)")
    d.add_argument("--data", default=DEMO_DATA, metavar="DIR",
                   help="where the demo keeps its central, nodes and logs (default: var/demo); "
                        "a later run on the same DIR carries on its recordings")
    d.add_argument("--headless", action="store_true",
                   help="no UI: record for --seconds, stop, verify the archive and print one summary line")
    d.add_argument("--seconds", type=_positive(float), default=60.0, metavar="S",
                   help="with --headless, how long to record (default: 60)")
    d.add_argument("--segment-seconds", type=_positive(int), default=10, metavar="S",
                   help="length of each recorded segment (default: 10; a real camera node uses 60)")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("tui", help="the terminal UI")
    t.add_argument("--socket")
    t.add_argument("--data")
    t.add_argument("--profile", choices=("full", "console", "serial"),
                   help="what the terminal can show (default: from TERM, COLORTERM and NO_COLOR)")
    t.set_defaults(func=cmd_tui)
    return p


# What a person does next when the API refuses them before their first use (C22, C8): the
# refusal itself names the rule, not the command to run from a shell.
NEXT_STEPS = {
    "policy_ack_required": "read it with 'custodian call policy.text', then acknowledge that version with "
                           "custodian call policy.acknowledge '{\"version\": \"VERSION\"}' (or log in once with "
                           "'custodian tui')",
    "passphrase_change_required": "choose it with 'custodian call user.change_passphrase' "
                                  "(it asks for the current and the new one)",
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from appliance.client import ApiError

    try:
        return args.func(args)
    except EnrolmentRefused as e:
        # A new pairing code is needed: exit status 78 (EX_CONFIG) tells systemd not to restart.
        print(f"custodian: {e}", file=sys.stderr)
        return 78
    except (CustodianError, SettingsError) as e:
        print(f"custodian: {e}", file=sys.stderr)
        return 2
    except ApiError as e:
        clause = f" (policy {e.clause})" if e.clause else ""
        print(f"custodian: {e.message}{clause} [{e.code}]", file=sys.stderr)
        if e.code in NEXT_STEPS:
            print(f"custodian: {NEXT_STEPS[e.code]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
