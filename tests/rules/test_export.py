"""Evidence packages end to end (C3, C4, C12, C13, C14, C16): real H.264, real segments, real ffmpeg,
the real sha256sum, openssl, pdftotext and 7z, and `custodian export` against a serving central.

One central for the module: 3 minutes of footage from two cameras (cam-b misses its
middle segment, a gap the package must list), a subpoena, counsel and a release.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import nacl.signing
import pytest

from appliance.rules import export as export_mod
from appliance.formats import segment as seg
from appliance.errors import ArchiveSealed
from appliance.formats.export_package import PackageFault, canonical_annexb, verify_package
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.registry import iso, parse_iso
from conftest import DIRECTOR, ROOT, People, ServingCentral, enrol_camera_record
from hw.annexb import split_access_units
from hw.backend import Frame
from test_retention import Camera

pytestmark = pytest.mark.slow

FPS = 10
SEGMENT_FRAMES = 60 * FPS
CAMERAS = {"cam-a": ("testsrc2", (160, 120)), "cam-b": ("testsrc", (176, 144))}
TAKEN = dict(medium="USB stick, SanDisk 32 GB, library tag 4411", taken_by="Det. R. Lane, Chariton PD")


def encode(source: str, size: tuple[int, int], seconds: int) -> bytes:
    """As a node's ffmpeg backend encodes: a keyframe every second, SPS/PPS repeated, AUDs, no B-frames."""
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         f"{source}=size={size[0]}x{size[1]}:rate={FPS}", "-t", str(seconds), "-c:v", "libx264", "-preset",
         "ultrafast", "-tune", "zerolatency", "-g", str(FPS), "-x264-params", "repeat-headers=1:aud=1",
         "-f", "h264", "-"], capture_output=True, check=True, timeout=120).stdout


def store(central, camera: str, units, start: datetime, node, skip_seqs=()) -> list[str]:
    """Write units as signed, encrypted 60 s segments and commit them as ingest does; returns chain digests."""
    enrol_camera_record(central, camera, node.verify_key.encode().hex())
    start_us = (start - datetime(1970, 1, 1, tzinfo=start.tzinfo)) // timedelta(microseconds=1)
    prev, digests = None, []
    for n, first in enumerate(range(0, len(units), SEGMENT_FRAMES)):
        path = central.archive.incoming_path(camera, n)
        writer = seg.SegmentWriter(
            path, params=seg.StreamParams(camera, *CAMERAS[camera][1], FPS), seq=n, prev_digest=prev,
            archive_key=central.keys.archive_public_key(), signing_key=node,
            start_us=start_us + first * 1_000_000 // FPS, chunk_bytes=32 * 1024)
        for i, unit in enumerate(units[first:first + SEGMENT_FRAMES], start=first):
            writer.write_frame(Frame(unit.data, unit.keyframe, 5_000_000 + i * 1_000_000 // FPS))
        info = writer.close()
        prev = info.digest
        digests.append(info.digest)
        if n in skip_seqs:
            path.unlink()          # never arrived: the archive records a gap
            continue
        assert central.archive.commit(path, seg.verify_file(path)) == "stored"
    return digests


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from nacl.pwhash import argon2id

    from appliance import config
    from appliance.custody import keys
    from appliance.central.daemon import Central, init_central

    tmp = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keys, "ARGON2_OPSLIMIT", argon2id.OPSLIMIT_MIN)
        mp.setattr(keys, "ARGON2_MEMLIMIT", argon2id.MEMLIMIT_MIN)
        data = tmp / "central"
        init_central(data, *DIRECTOR)
        cfg = config.load(overrides={"central": {"data_dir": str(data), "ingest_port": 0,
                                                 "api_socket": str(tmp / "api.sock")}})
        central = Central(cfg, data)
        people = People(central)
        people.login("director")
        for name, role in (("sam", "staff"), ("ivy", "it")):
            central.call("user.create", {"name": name, "role": role, "passphrase": f"temporary-{name}-1"},
                         people.tokens["director"])
            token = central.call("session.login", {"user": name, "passphrase": f"temporary-{name}-1"})["token"]
            central.call("user.change_passphrase", {"old": f"temporary-{name}-1", "new": f"{name}-passphrase-1"},
                         token)
            people.login(name, f"{name}-passphrase-1")
        start = (central.now() - timedelta(hours=2)).replace(microsecond=0)
        nodes = {camera: nacl.signing.SigningKey.generate() for camera in CAMERAS}
        digests = {camera: store(central, camera, split_access_units(encode(src, size, 180)), start, nodes[camera],
                                 skip_seqs=(1,) if camera == "cam-b" else ())
                   for camera, (src, size) in CAMERAS.items()}
        incident = people.call("sam", "incident.create", grounds="criminal_activity", occurred_at=iso(start),
                               location="Main entrance", attestation=True,
                               description="A laptop was taken from the study carrels near the entrance.")["incident"]
        instrument = people.call("director", "instrument.record", kind="subpoena", reference="SUB-2026-0117",
                                 court="Lucas County District Court",
                                 issued_on=(central.now() - timedelta(days=1)).date().isoformat(),
                                 received_on=central.now().date().isoformat(),
                                 description="All recordings of the entrance cameras during the theft",
                                 cameras=list(CAMERAS), start=iso(start - timedelta(hours=1)),
                                 end=iso(start + timedelta(hours=1)), incident=incident["id"])["instrument"]
        people.call("director", "counsel.record", instrument=instrument["id"], counsel="J. Ortiz, library attorney",
                    consulted_on=central.now().date().isoformat(), summary="Valid; release the named cameras only.")
        release = people.call("director", "release.create", instrument=instrument["id"], cameras=list(CAMERAS),
                              start=iso(start), end=iso(start + timedelta(seconds=180)),
                              recipient="Chariton Police Department, Det. R. Lane")["release"]
        people.unseal()
        world = {"central": central, "people": people, "start": start, "digests": digests, "nodes": nodes, "tmp": tmp,
                 "instrument": instrument, "release": release, "incident": incident}
        yield world
        central.close()


def build(world, destination: Path, **extra) -> tuple[dict, dict]:
    destination.mkdir(parents=True, exist_ok=True)
    started = world["people"].call("director", "release.build", release=world["release"]["id"],
                                   to=str(destination), **TAKEN, **extra)
    status = export_mod.wait_for(world["central"], started["build"]["build"])
    assert status["state"] == "built", status["error"]
    return started, status


@pytest.fixture(scope="module")
def package(world):
    moment = world["start"] + timedelta(seconds=75)
    _started, status = build(world, world["tmp"] / "usb", stills=[
        {"camera": "cam-a", "at": iso(moment)}, {"camera": "cam-b", "at": iso(moment + timedelta(seconds=60))},
        {"camera": "cam-b", "at": iso(moment)}])      # the last falls in cam-b's gap: listed, not invented
    return Path(status["result"]["package"]), status


@contextlib.contextmanager
def served(world):
    """The module's central serving its API on a socket; it seals the archive when it stops: unseal again."""
    world["central"].cfg.central.ingest_host = "127.0.0.1"
    serving = ServingCentral(world["central"])
    try:
        yield serving
    finally:
        serving.stop()
        world["people"].unseal()


def run(*argv, cwd=None, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


# --------------------------------------------------------------------------- the package


def test_package_verifies_with_stock_tools(world, package):
    path, status = package
    manifest = json.loads((path / "manifest.json").read_text())
    assert run("sha256sum", "-c", "--strict", "SHA256SUMS", cwd=path).returncode == 0
    done = run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "appliance-key.pem", "-rawin",
               "-in", "manifest.json", "-sigfile", "manifest.sig", cwd=path)
    assert done.returncode == 0 and "Signature Verified Successfully" in done.stdout
    # The README's script runs as written, and names the key the appliance really has.
    readme = (path / "README.txt").read_text()
    script = readme.split("----- verify.sh: run it with sh inside this folder -----\n")[1].split("----- end")[0]
    done = run("sh", "-c", script, cwd=path)
    assert done.returncode == 0, done.stdout + done.stderr
    raw_key = bytes(world["central"].keys.verify_key())
    assert hashlib.sha256(raw_key).hexdigest() in done.stdout
    keys = run(sys.executable, "-m", "appliance.cli", "central", "keys", "--data", str(world["central"].paths.data),
               cwd=ROOT)
    assert json.loads(keys.stdout)["appliance_key_sha256"] == manifest["appliance_key"]["sha256_raw"] \
        == hashlib.sha256(raw_key).hexdigest()
    assert "every header and trailer carries its camera's signature" in done.stdout

    clips = {p["file"]: p for c in manifest["cameras"] for p in c["pieces"]}
    assert set(clips) == {"video/cam-a-1.mp4", "video/cam-b-1.mp4", "video/cam-b-2.mp4"}
    for name, seconds in (("video/cam-a-1.mp4", 180.0), ("video/cam-b-1.mp4", 60.0), ("video/cam-b-2.mp4", 60.0)):
        probe = run("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path / name))
        assert abs(float(probe.stdout) - seconds) < 0.15, (name, probe.stdout)
        decode = run("ffmpeg", "-v", "error", "-i", str(path / name), "-f", "null", "-")
        assert decode.returncode == 0 and decode.stderr == "", decode.stderr
        assert clips[name]["made"] == "stream_copy"
    # The gap is listed, not papered over; the stills are where they were asked for.
    [camera_b] = [c for c in manifest["cameras"] if c["camera"] == "cam-b"]
    assert [(g["kind"], g["after_seq"], g["before_seq"]) for g in camera_b["gaps"] if g["kind"] == "missing"] == \
        [("missing", 0, 2)]
    assert any(g["kind"] == "no_picture" for g in camera_b["gaps"])
    assert [(s["camera"], bool(s["file"])) for s in manifest["stills"]] == [("cam-a", True), ("cam-b", True),
                                                                           ("cam-b", False)]
    assert all((path / s["file"]).read_bytes().startswith(b"\x89PNG") for s in manifest["stills"][:2])

    # The signed segments are the ones in the archive: each camera's chain digests, in order.
    for camera, digests in world["digests"].items():
        listed = [s["digest"] for c in manifest["cameras"] if c["camera"] == camera
                  for p in c["pieces"] for s in p["segments"]]
        assert listed == [d for n, d in enumerate(digests) if not (camera == "cam-b" and n == 1)]

    text = run("pdftotext", "-layout", str(path / "custody-report.pdf"), "-").stdout
    assert world["release"]["id"] in text and world["instrument"]["id"] in text and "SUB-2026-0117" in text
    for c in manifest["cameras"]:
        for p in c["pieces"]:
            assert p["sha256"] in text
            for s in p["segments"]:
                assert s["digest"] in text, s["seq"]
    assert "no gaps" not in text.split("Camera cam-b")[1].split("Camera")[0]


def test_register_and_audit_record_the_copy(world, package):
    path, status = package
    central = world["central"]
    manifest_digest = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    assert status["result"]["manifest_sha256"] == manifest_digest
    export = central.records.get("exports", world["release"]["export"])
    copy = next(c for c in export["copies"] if c["build"] == status["build"])
    assert (copy["manifest_sha256"], copy["medium"], copy["taken_by"]) == (manifest_digest, TAKEN["medium"],
                                                                           TAKEN["taken_by"])
    assert copy["built_by"] == world["people"].ids["director"]
    assert copy["state"] == "complete" and copy["bytes"] > 0
    release = central.records.get("releases", world["release"]["id"])
    assert release["package"]["status"] == "built" and release["package"]["manifest_sha256"]
    built = [e for e in central.audit.query(action_prefix="release.built") if e["details"]["build"] == status["build"]]
    assert built[0]["details"]["manifest_sha256"] == manifest_digest
    assert central.audit.query(action_prefix="release.build")[0]["details"]["medium"] == TAKEN["medium"]


def test_progress_advances(package):
    _path, status = package
    done = [d for _step, d, _t in status["history"]]
    seconds = [t for _step, _d, t in status["history"]]
    assert done == sorted(done) and len(set(done)) >= 4 and seconds == sorted(seconds), status["history"]
    assert any("segment" in step for step, _d, _t in status["history"])
    assert status["percent"] == 100 and status["done_bytes"] == status["total_bytes"]


def test_no_plaintext_left_outside_the_package(world, package):
    path, _status = package
    for root in (world["central"].paths.data, path.parent):
        for p in root.rglob("*"):
            if p.is_file() and path not in p.parents:
                data = p.read_bytes()
                assert b"\x00\x00\x00\x01\x67" not in data, p        # an SPS in clear
    assert not list(path.parent.glob(".*.part"))


def test_C3_a_clip_never_reaches_outside_the_released_window(world, tmp_path):
    """A stream copy must start at a keyframe: the first one inside the window, never one before it."""
    start = world["start"]
    release = world["people"].call("director", "release.create", instrument=world["instrument"]["id"],
                                   cameras=["cam-a"], start=iso(start + timedelta(seconds=30.5)),
                                   end=iso(start + timedelta(seconds=100)), recipient="Chariton PD")["release"]
    started = world["people"].call("director", "release.build", release=release["id"], to=str(tmp_path), **TAKEN)
    status = export_mod.wait_for(world["central"], started["build"]["build"])
    assert status["state"] == "built", status["error"]
    package = Path(status["result"]["package"])
    [piece] = json.loads((package / "manifest.json").read_text())["cameras"][0]["pieces"]
    assert piece["first_frame_at"] == iso(start + timedelta(seconds=31))       # the keyframes are whole seconds
    assert piece["last_frame_at"] == iso(start + timedelta(seconds=100))
    assert piece["frames"] == 69 * FPS + 1
    assert [s["seq"] for s in piece["segments"]] == [0, 1]
    assert piece["segments"][0]["frames_used"] == {"first": 310, "count": 290}
    verify_package(package)


def test_C3_a_packages_still_is_a_picture_inside_the_released_window(world, tmp_path):
    """A still asked for at the window's first instant is the first picture inside it, never the one
    30 ms before it that is nearer: the release is what the instrument allows, to the picture."""
    start = world["start"]
    opens = start + timedelta(seconds=30, milliseconds=30)      # pictures every 100 ms from `start`
    release = world["people"].call("director", "release.create", instrument=world["instrument"]["id"],
                                   cameras=["cam-a"], start=iso(opens), end=iso(start + timedelta(seconds=33)),
                                   recipient="Chariton PD")["release"]
    started = world["people"].call("director", "release.build", release=release["id"], to=str(tmp_path),
                                   stills=[{"camera": "cam-a", "at": iso(opens)}], **TAKEN)
    status = export_mod.wait_for(world["central"], started["build"]["build"])
    assert status["state"] == "built", status["error"]
    package = Path(status["result"]["package"])
    [still] = json.loads((package / "manifest.json").read_text())["stills"]
    assert still["frame_at"] == iso(start + timedelta(seconds=30, milliseconds=100)) and still["file"]
    verify_package(package)


@pytest.mark.parametrize("ends", ["revoked", "disabled", "revoked at the stills"])
def test_C2_a_build_stops_when_its_acting_director_no_longer_holds_custody(world, tmp_path, monkeypatch, ends):
    """Sam, acting director, starts a package; while it reads the first segment the Director revokes
    her period, or disables her account. The build stops at the next segment: the copy is not
    finished, registered or left on the medium, and the failure is audited. Revoked once the clips
    are made (at the stills), it stops before the copy is registered. A package leaves in the
    Director's custody, not in that of someone who no longer holds it (C2)."""
    central, people = world["central"], world["people"]
    now = central.now()
    people.call("director", "director.designate_acting", user="sam", start=iso(now - timedelta(minutes=1)),
                end=iso(now + timedelta(days=1)), why="the Director is away for the day")
    end_it = {"disabled": lambda: people.call("director", "user.set_disabled", user="sam", disabled=True)}.get(
        ends, lambda: people.call("director", "director.revoke_acting", user="sam"))
    module, name = (export_mod.media, "png_frames") if ends == "revoked at the stills" else (seg, "read_verified")
    real = getattr(module, name)
    ended = []

    def then_end(*args, **kwargs):
        found = real(*args, **kwargs)
        if not ended:
            ended.append(end_it())
        return found
    monkeypatch.setattr(module, name, then_end)
    try:
        people.login("sam", "sam-passphrase-1")
        started = people.call("sam", "release.build", release=world["release"]["id"], to=str(tmp_path), **TAKEN)
        status = export_mod.wait_for(central, started["build"]["build"])
    finally:                                          # the next tests use sam as plain staff, logged in
        people.call("director", "user.set_disabled", user="sam", disabled=False)
        people.call("director", "director.revoke_acting", user="sam")
        people.login("sam", "sam-passphrase-1")
    assert ended and status["state"] == "failed"
    assert ("was disabled" if ends == "disabled" else "period ended") in status["error"]
    steps = [h[0] for h in status["history"]]
    assert steps[-1].startswith("failed") and ("stills" in steps) == (ends == "revoked at the stills")
    assert list(tmp_path.iterdir()) == []
    export = central.records.get("exports", world["release"]["export"])
    assert all(c["build"] != started["build"]["build"] for c in export.get("copies") or [])
    [failed] = [e for e in central.audit.query(action_prefix="release.build_failed")
                if e["details"]["build"] == started["build"]["build"]]
    assert failed["actor"] == people.ids["sam"]


def test_C16_a_copy_built_in_a_breach_window_is_found_and_one_built_after_a_retrieval_is_outstanding(world,
                                                                                                   tmp_path):
    """A breach response retrieves the copies made in its window (C16): a copy is made when a package is
    built onto a medium, not when its release was approved. A release approved before the window and
    built inside it is a copy to retrieve; and a copy built after the release's copies were retrieved is
    out again, to retrieve again."""
    central, people, start = world["central"], world["people"], world["start"]
    release = people.call("director", "release.create", instrument=world["instrument"]["id"], cameras=["cam-a"],
                          start=iso(start + timedelta(seconds=10)), end=iso(start + timedelta(seconds=14)),
                          recipient="Chariton PD")["release"]
    export = release["export"]
    approved = parse_iso(central.records.get("exports", export)["created_at"])
    breach = people.call("sam", "breach.report", what="a USB stick with footage was left in the copier room",
                         noticed_at=iso(central.now()))["breach"]["id"]

    def copy_check() -> tuple[list[str], list[str]]:
        found = people.call("director", "breach.copies", breach=breach, since=iso(approved + timedelta(microseconds=1)),
                            until=iso(central.now() + timedelta(minutes=1)))
        return [c["id"] for c in found["copies"]], found["outstanding"]

    assert export not in copy_check()[0]                   # approved before the window, nothing built yet
    for n in (1, 2):
        (tmp_path / str(n)).mkdir()
        started = people.call("director", "release.build", release=release["id"], to=str(tmp_path / str(n)), **TAKEN)
        assert export_mod.wait_for(central, started["build"]["build"])["state"] == "built"
        found, outstanding = copy_check()
        assert export in found and export in outstanding, n
        with pytest.raises(Refused, match="not retrieved yet"):
            people.call("director", "breach.step", breach=breach, step="retrieve_copies", notes="all back")
        people.call("director", "export.mark_retrieved", export=export, note=f"copy {n} back from Det. Lane")
        assert export not in copy_check()[1]
    people.call("director", "breach.step", breach=breach, step="retrieve_copies", notes="both copies are back")


def test_C13_a_sealed_warrant_leaves_only_as_the_api_shows_it(world, tmp_path):
    central, people, start = world["central"], world["people"], world["start"]
    secret = "SW-2026-0042 (Judge Hale)"
    warrant = people.call("director", "instrument.record", kind="search_warrant", reference=secret,
                          court="District Court", issued_on=central.now().date().isoformat(),
                          received_on=central.now().date().isoformat(), description="Entrance, the theft",
                          cameras=["cam-a"], start=iso(start), end=iso(start + timedelta(minutes=1)))["instrument"]
    people.call("director", "counsel.record", instrument=warrant["id"], counsel="J. Ortiz",
                consulted_on=central.now().date().isoformat(), summary="Comply.")
    release = people.call("director", "release.create", instrument=warrant["id"], cameras=["cam-a"],
                          start=iso(start), end=iso(start + timedelta(minutes=1)), recipient="Sheriff")["release"]
    people.call("director", "director.designate_acting", user=people.ids["sam"], start=iso(central.now()),
                end=iso(central.now() + timedelta(hours=1)), why="Director away this afternoon")
    try:
        with pytest.raises(Refused) as e:
            people.call("sam", "release.build", release=release["id"], to=str(tmp_path), **TAKEN)
        assert e.value.clause == "C13"
    finally:
        people.call("director", "director.revoke_acting", user=people.ids["sam"])
        people.login("sam")          # revoking ends her sessions
    assert list(tmp_path.iterdir()) == []
    started = people.call("director", "release.build", release=release["id"], to=str(tmp_path), **TAKEN)
    status = export_mod.wait_for(central, started["build"]["build"])
    assert status["state"] == "built", status["error"]
    package = Path(status["result"]["package"])
    instrument = json.loads((package / "manifest.json").read_text())["instrument"]
    assert instrument["sealed"] is True and "reference" not in instrument
    for name in ("manifest.json", "README.txt"):
        assert secret not in (package / name).read_text()
    assert secret not in run("pdftotext", str(package / "custody-report.pdf"), "-").stdout
    assert secret not in (central.paths.audit / "audit.jsonl").read_text()
    verify_package(package)


# --------------------------------------------------------------------------- tampering


def copy_of(package: Path, tmp: Path) -> Path:
    target = tmp / package.name
    shutil.copytree(package, target)
    return target


def test_any_changed_byte_or_missing_file_fails(package, tmp_path):
    path, _status = package
    assert verify_package(path).files > 20
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    for name in files:
        for how in ("flip", "remove"):
            victim = copy_of(path, tmp_path / f"{how}-{name.replace('/', '_')}")
            target = victim / name
            if how == "flip":
                data = bytearray(target.read_bytes())
                data[len(data) // 2] ^= 0x01
                target.write_bytes(bytes(data))
            else:
                target.unlink()
            with pytest.raises(PackageFault):
                verify_package(victim)
            shutil.rmtree(victim)
    extra = copy_of(path, tmp_path / "extra")
    (extra / "video" / "note.txt").write_text("added later")
    with pytest.raises(PackageFault, match="not in SHA256SUMS"):
        verify_package(extra)


def resign(world, package: Path, key=None, fix_pieces: bool = True) -> None:
    """What only someone holding the appliance key could do: make SHA256SUMS, the clips' sums and sizes in
    the manifest (unless `fix_pieces` is false) and the signature fit again."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(package).as_posix()}"
             for p in sorted(package.rglob("*")) if p.is_file() and p.name not in
             ("manifest.json", "manifest.sig", "SHA256SUMS")]
    (package / "SHA256SUMS").write_text("".join(line + "\n" for line in sorted(lines, key=lambda s: s[66:])))
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["sha256sums"] = hashlib.sha256((package / "SHA256SUMS").read_bytes()).hexdigest()
    for camera in manifest["cameras"] if fix_pieces else []:
        for piece in camera["pieces"]:
            piece["sha256"] = hashlib.sha256((package / piece["file"]).read_bytes()).hexdigest()
            piece["bytes"] = (package / piece["file"]).stat().st_size
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (package / "manifest.json").write_bytes(data)
    (package / "manifest.sig").write_bytes((key or world["central"].keys.signing_key()).sign(data).signature)


def test_a_recut_mp4_fails_even_when_everything_is_signed_again(world, package, tmp_path):
    path, _status = package
    victim = copy_of(path, tmp_path / "recut")
    clip = victim / "video" / "cam-a-1.mp4"
    recut = run("ffmpeg", "-v", "error", "-ss", "20", "-i", str(clip), "-c", "copy", "-movflags",
                export_mod.MOVFLAGS, "-f", "mp4", str(tmp_path / "recut.mp4"))
    assert recut.returncode == 0, recut.stderr
    shutil.move(tmp_path / "recut.mp4", clip)
    resign(world, victim)
    assert run("sha256sum", "-c", "--quiet", "SHA256SUMS", cwd=victim).returncode == 0   # the sums alone pass
    with pytest.raises(PackageFault, match="cam-a-1.mp4 does not match segment 0"):
        verify_package(victim)
    # A manifest signed but malformed (a field missing) is a clear fault, not a crash.
    broken = copy_of(path, tmp_path / "malformed")
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["cameras"][0]["pieces"][0]["annexb"]
    (broken / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    resign(world, broken)
    with pytest.raises(PackageFault, match="malformed"):
        verify_package(broken)
    # A different key fails too, even with everything signed by it.
    victim2 = copy_of(path, tmp_path / "otherkey")
    from appliance.custody.keys import ed25519_public_pem
    other = nacl.signing.SigningKey.generate()
    (victim2 / "appliance-key.pem").write_text(ed25519_public_pem(bytes(other.verify_key)))
    resign(world, victim2, other)
    assert verify_package(victim2).key_sha256 != verify_package(path).key_sha256
    with pytest.raises(PackageFault, match="not the appliance key you expected"):
        verify_package(victim2, pinned_key=bytes(world["central"].keys.verify_key()))


@pytest.mark.parametrize("change, fault", [
    (lambda m: m["cameras"][0]["pieces"][0].update(sha256="0" * 64), "its SHA-256 in SHA256SUMS"),
    (lambda m: m["cameras"][0]["pieces"][0].update(bytes=1), "a size of 1 bytes"),
    (lambda m: m["cameras"][0]["pieces"][0]["segments"][1]["annexb"].update(offset=0), "offset"),
    (lambda m: m.update(files=m["files"] + 1), "SHA256SUMS lists"),
    (lambda m: next(s for s in m["stills"] if s["file"]).update(sha256="0" * 64), "its SHA-256 in SHA256SUMS"),
], ids=["piece-sha256", "piece-bytes", "segment-offset", "files", "still-sha256"])
def test_a_manifest_that_disagrees_with_the_package_fails_even_signed_again(world, package, tmp_path, change, fault):
    """docs/export-format.md: a piece's file, sha256 and bytes are the MP4's; each segment's part of the clip's
    Annex-B lies at its annexb.offset (what the spec's shell check cuts); files is how many SHA256SUMS lists.
    A checker following the spec uses them: the reference checker must hold the manifest to them too."""
    path, _status = package
    victim = copy_of(path, tmp_path / "disagrees")
    manifest = json.loads((victim / "manifest.json").read_text())
    change(manifest)
    (victim / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    resign(world, victim, fix_pieces=False)
    with pytest.raises(PackageFault, match=fault):
        verify_package(victim)


def test_offsets_cut_the_clip_as_the_spec_shell_check_does(package, tmp_path):
    """The spec's own words, with stock tools: `tail -c +$((offset + 1)) clip.h264 | head -c $bytes | sha256sum`."""
    path, _status = package
    manifest = json.loads((path / "manifest.json").read_text())
    for camera in manifest["cameras"]:
        for piece in camera["pieces"]:
            if piece["made"] != "stream_copy":
                continue
            h264 = tmp_path / "clip.h264"
            done = run("ffmpeg", "-v", "error", "-i", str(path / piece["file"]), "-map", "0:v:0", "-c", "copy",
                       "-bsf:v", "h264_mp4toannexb", "-f", "h264", "-y", str(h264))
            assert done.returncode == 0, done.stderr
            for s in piece["segments"]:
                a = s["annexb"]
                cut = run("sh", "-c", f"tail -c +$(({a['offset']} + 1)) {h264} | head -c {a['bytes']} | sha256sum")
                assert cut.stdout.split()[0] == a["sha256"], (camera["camera"], s["seq"])


def test_custodian_export_verify_names_the_first_fault(package, tmp_path):
    path, _status = package
    ok = run(sys.executable, "-m", "appliance.cli", "export", "verify", str(path), cwd=ROOT)
    assert ok.returncode == 0 and "verifies" in ok.stdout, ok.stdout + ok.stderr
    victim = copy_of(path, tmp_path / "bad")
    (victim / "stills").joinpath(sorted(os.listdir(victim / "stills"))[0]).write_bytes(b"not a picture")
    bad = run(sys.executable, "-m", "appliance.cli", "export", "verify", str(victim), cwd=ROOT)
    assert bad.returncode == 1 and "FAULT:" in bad.stderr and "stills/" in bad.stderr


# --------------------------------------------------------------------------- refusals: nothing left behind


def nothing_built(world, destination: Path) -> None:
    assert list(destination.iterdir()) == []
    export = world["central"].records.get("exports", world["release"]["export"])
    assert not any(c["path"].startswith(str(destination)) for c in export.get("copies") or [])


def test_C3_C14_refusals_leave_no_package_and_no_register_entry(world, tmp_path):
    central, people = world["central"], world["people"]
    destination = tmp_path / "usb"
    destination.mkdir()
    args = dict(to=str(destination), **TAKEN)
    for who in ("sam", "ivy"):                                                     # not the Director
        with pytest.raises(Refused) as e:
            people.call(who, "release.build", release=world["release"]["id"], **args)
        assert e.value.code == "forbidden"
    with pytest.raises(NotFound):
        people.call("director", "release.build", release="rel-000404", **args)
    # A release record that names no instrument (written by an older version, or altered): refused (C3).
    orphan = dict(world["release"], instrument="ins-000404")
    orphan.pop("id")
    orphan_id = central.records.insert("releases", orphan)
    with pytest.raises(Refused) as e:
        people.call("director", "release.build", release=orphan_id, **args)
    assert e.value.clause == "C3"
    # Counsel not recorded for its instrument: refused (C14).
    uncounselled = dict(world["release"], counsel=[])
    uncounselled.pop("id")
    uncounselled_id = central.records.insert("releases", uncounselled)
    try:
        with pytest.raises(Refused) as e:
            people.call("director", "release.build", release=uncounselled_id, **args)
        assert e.value.clause == "C14"
        nothing_built(world, destination)
    finally:
        central.records.remove("releases", orphan_id)
        central.records.remove("releases", uncounselled_id)


def test_a_sealed_archive_builds_nothing(world, tmp_path):
    people = world["people"]
    destination = tmp_path / "usb"
    destination.mkdir()
    people.call("director", "archive.seal")
    try:
        with pytest.raises(ArchiveSealed):
            people.call("director", "release.build", release=world["release"]["id"], to=str(destination), **TAKEN)
    finally:
        people.unseal()
    nothing_built(world, destination)


def test_a_destination_too_small_is_refused_before_starting(world, tmp_path):
    destination = tmp_path / "small"
    destination.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(destination)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(Refused, match="MB free"):
            world["people"].call("director", "release.build", release=world["release"]["id"], to=str(destination),
                                 **TAKEN)
        nothing_built(world, destination)
    finally:
        subprocess.run(["umount", str(destination)], check=True)


def test_a_medium_that_fills_during_the_build_leaves_nothing_and_says_so(world, tmp_path):
    """The free-space check passed, then something else filled the stick (another copy, a camera's
    card reader): the build fails with a message that says the medium is full, leaves no part of
    the package and no copy in the register."""
    destination = tmp_path / "stick"
    destination.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(destination)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    central = world["central"]
    copies_before = len(central.records.get("exports", world["release"]["export"]).get("copies") or [])
    try:
        started = world["people"].call("director", "release.build", release=world["release"]["id"],
                                       to=str(destination), **TAKEN)
        st = os.statvfs(destination)
        with open(destination / "someone-elses-file", "wb", buffering=0) as filler:
            try:
                filler.write(b"\0" * (st.f_bavail * st.f_frsize))
            except OSError:
                pass
        status = export_mod.wait_for(central, started["build"]["build"])
        assert status["state"] == "failed", status
        assert "medium" in status["error"] and "full" in status["error"], status["error"]
        assert sorted(p.name for p in destination.iterdir()) == ["someone-elses-file"]
        assert len(central.records.get("exports", world["release"]["export"]).get("copies") or []) == copies_before
        failed = central.audit.query(action_prefix="release.build_failed")[-1]
        assert failed["details"]["build"] == status["build"]
    finally:
        subprocess.run(["umount", "-l", str(destination)], check=True)


def test_a_failed_build_leaves_nothing_that_looks_complete(world, tmp_path):
    """A segment altered in the archive fails the build midway (cam-a's clip already written): the
    half-built package is removed, the register is unchanged, the failure is audited. A .part left by an
    earlier build that the central did not live to finish is cleared too."""
    central = world["central"]
    stale = tmp_path / f".{world['release']['id']}-20000101T000000Z.part"
    (stale / "video").mkdir(parents=True)
    (stale / "video" / "cam-a-1.mp4").write_bytes(b"half a clip")
    victim = central.archive.get("cam-b", 2).path
    original = victim.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    victim.write_bytes(bytes(damaged))
    copies_before = len(central.records.get("exports", world["release"]["export"]).get("copies") or [])
    try:
        started = world["people"].call("director", "release.build", release=world["release"]["id"],
                                       to=str(tmp_path), **TAKEN)
        status = export_mod.wait_for(central, started["build"]["build"])
    finally:
        victim.write_bytes(original)
    assert status["state"] == "failed" and "digest" in status["error"], status
    assert any(step.startswith("cam-a: segment") for step, _d, _t in status["history"])   # it got that far
    assert list(tmp_path.iterdir()) == []
    assert len(central.records.get("exports", world["release"]["export"]).get("copies") or []) == copies_before
    failed = central.audit.query(action_prefix="release.build_failed")[-1]
    assert failed["details"]["build"] == status["build"] and "digest" in failed["why"]


def _release_of_unplayable_footage(central, people, kind: str, camera: str = "reading-room") -> tuple[dict, dict]:
    """A minute of a camera's signed segments holding no H.264 ffmpeg can copy, an instrument over it,
    counsel and a release: (instrument, release). Its build starts, then fails at ffmpeg."""
    start = (central.now() - timedelta(hours=1)).replace(microsecond=0)
    Camera(central, camera).record(start)
    today, window = central.now().date().isoformat(), dict(start=iso(start), end=iso(start + timedelta(minutes=1)))
    instrument = people.call("director", "instrument.record", kind=kind, reference="SW-2026-0123",
                             court="District Court", issued_on=today, received_on=today, description="reading room",
                             cameras=[camera], **window)["instrument"]
    people.call("director", "counsel.record", instrument=instrument["id"], counsel="J. Ortiz", consulted_on=today,
                summary="Comply.")
    release = people.call("director", "release.create", instrument=instrument["id"], cameras=[camera],
                          recipient="Sheriff", **window)["release"]
    return instrument, release


def test_C13_a_failed_build_under_a_sealed_warrant_keeps_its_scope_out_of_the_audit_log(central, people, tmp_path):
    """ffmpeg's complaint names the clip it could not make, so the camera: under a sealed warrant the
    audit entry (readable by an acting director) says only that the build failed; the Director reads
    the error in release.build_status."""
    warrant, release = _release_of_unplayable_footage(central, people, "search_warrant")
    people.unseal()
    started = people.call("director", "release.build", release=release["id"], to=str(tmp_path), **TAKEN)
    status = people.call("director", "release.build_status", build=started["build"]["build"])["build"]
    status = export_mod.wait_for(central, status["build"])
    assert status["state"] == "failed" and "reading-room" in status["error"], status
    [failed] = central.audit.query(action_prefix="release.build_failed")
    assert failed["refs"] == {"instrument": warrant["id"], "export": release["export"]}
    assert "reading-room" not in json.dumps(failed) and failed["details"]["sealed"] is True


def test_C13_an_acting_director_does_not_follow_a_sealed_warrants_build(central, people, tmp_path):
    """A build's status names its cameras, segments and package: under a sealed warrant, the Director's."""
    _warrant, release = _release_of_unplayable_footage(central, people, "search_warrant")
    people.unseal()
    build = people.call("director", "release.build", release=release["id"], to=str(tmp_path), **TAKEN)["build"]
    export_mod.wait_for(central, build["build"])
    people.call("director", "director.designate_acting", user="sam",
                start=iso(central.now() - timedelta(minutes=1)), end=iso(central.now() + timedelta(hours=1)),
                why="Director away this afternoon")
    with pytest.raises(Refused) as e:
        people.call("sam", "release.build_status", build=build["build"])
    assert e.value.clause == "C13"


def test_C3_C4_a_build_stays_inside_the_instrument_and_off_the_data_disk(central, people, tmp_path):
    """release.build checks again what release.create checked (a release record altered since, or written
    by an older version, reaching past its instrument: C3), and never writes into the central's data
    directory, which is not a medium that leaves with the recipient (C4)."""
    _order, release = _release_of_unplayable_footage(central, people, "court_order")
    Camera(central, "side-door")
    people.unseal()
    wider = dict(release, cameras=["reading-room", "side-door"])
    wider.pop("id")
    wider_id = central.records.insert("releases", wider)
    medium, inside = tmp_path / "usb", central.paths.data / "usb"
    medium.mkdir(), inside.mkdir()
    with pytest.raises(Refused) as e:
        people.call("director", "release.build", release=wider_id, to=str(medium), **TAKEN)
    assert e.value.clause == "C3"
    with pytest.raises(Refused) as e:
        people.call("director", "release.build", release=release["id"], to=str(inside), **TAKEN)
    assert e.value.clause == "C4"
    assert list(medium.iterdir()) == [] and list(inside.iterdir()) == []
    assert central.audit.query(action_prefix="release.build") == []


def build_and_fail(world, destination: Path, **extra) -> dict:
    """Start a build that must fail; returns its status once the build has given up."""
    destination.mkdir(parents=True, exist_ok=True)
    started = world["people"].call("director", "release.build", release=world["release"]["id"],
                                   to=str(destination), **TAKEN, **extra)
    status = export_mod.wait_for(world["central"], started["build"]["build"])
    assert status["state"] == "failed", status
    return status


def nothing_left_running(build_id: str) -> None:
    """The build's worker, MP4 reader and ffmpeg are gone by the time it reports its failure."""
    assert [t.name for t in threading.enumerate() if t.name.startswith(f"export-{build_id}-")] == []
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            comm, rest = stat.read_text().rsplit(")", 1)
            if int(rest.split()[1]) == os.getpid() and comm.endswith("(ffmpeg"):
                children.append(stat.parent.name)
    assert children == []


def test_a_segment_failing_while_ffmpeg_makes_its_clip_stops_the_build_cleanly(world, tmp_path):
    """The worker verifies each segment while ffmpeg is taking the pictures of the one before. When cam-a's
    last segment turns out altered, ffmpeg has half a clip: the build fails, ffmpeg and the worker are
    stopped, and nothing is left on the medium or in the register."""
    central = world["central"]
    victim = central.archive.get("cam-a", 2).path
    original = victim.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    copies_before = len(central.records.get("exports", world["release"]["export"]).get("copies") or [])
    victim.write_bytes(bytes(damaged))
    try:
        status = build_and_fail(world, tmp_path / "usb")
    finally:
        victim.write_bytes(original)
    assert status["error"].startswith("cam-a segment 2: body digest"), status["error"]
    steps = [step for step, _d, _t in status["history"]]
    assert "cam-a: segment 1" in steps and "cam-a: segment 2" not in steps    # ffmpeg had segments 0 and 1
    nothing_left_running(status["build"])
    assert list((tmp_path / "usb").iterdir()) == []
    assert len(central.records.get("exports", world["release"]["export"]).get("copies") or []) == copies_before


def test_ffmpeg_failing_stops_the_worker_and_leaves_nothing(world, tmp_path, monkeypatch):
    """The other way round: ffmpeg gives up (here: on an MP4 flag it does not know) while the worker is
    still decrypting: the worker is stopped at its next block and the build fails with ffmpeg's reason."""
    monkeypatch.setattr(export_mod, "MOVFLAGS", "+no_such_flag")
    status = build_and_fail(world, tmp_path / "usb")
    assert status["error"].startswith("ffmpeg could not make video/cam-a-1.mp4: "), status["error"]
    nothing_left_running(status["build"])
    assert list((tmp_path / "usb").iterdir()) == []


def test_a_segment_out_of_its_chain_fails_the_build(world, tmp_path):
    """Every segment is checked against the one before it before its pictures leave. A segment the
    camera's key signed but that does not chain (cam-a's segment 1 written again, naming another
    predecessor), or a file stored under another segment's number, fails the build."""
    central = world["central"]
    paths = {seq: central.archive.get("cam-a", seq).path for seq in (1, 2)}
    originals = {seq: path.read_bytes() for seq, path in paths.items()}
    info = seg.verify_file(paths[1])
    forged = tmp_path / "forged" / paths[1].name
    writer = seg.SegmentWriter(forged, params=seg.StreamParams("cam-a", *CAMERAS["cam-a"][1], FPS), seq=1,
                               prev_digest=hashlib.sha256(b"not segment 0").hexdigest(),
                               archive_key=central.keys.archive_public_key(), signing_key=world["nodes"]["cam-a"],
                               start_us=info.header["start_us"], chunk_bytes=32 * 1024)
    for frame in seg.iter_frames(paths[1], central.custody.private_key(), seg.header_key):
        writer.write_frame(frame)
    writer.close()
    for n, (tamper, fault) in enumerate(((lambda: paths[1].write_bytes(forged.read_bytes()), "does not chain"),
                                         (lambda: paths[1].write_bytes(originals[2]), "holds segment 2"))):
        tamper()
        try:
            status = build_and_fail(world, tmp_path / f"usb-{n}")
        finally:
            paths[1].write_bytes(originals[1])
        assert fault in status["error"], status["error"]
        nothing_left_running(status["build"])
        assert list((tmp_path / f"usb-{n}").iterdir()) == []


def test_C3_a_packages_stills_come_only_from_its_release(central, people, tmp_path):
    """A still is a picture that leaves with the package: one of a camera the release does not name, or
    from outside its window, would reach past what the instrument allows. Refused before anything starts."""
    _order, release = _release_of_unplayable_footage(central, people, "court_order")
    Camera(central, "side-door").record(parse_iso(release["start"]))
    people.unseal()
    medium = tmp_path / "usb"
    medium.mkdir()
    inside = iso(parse_iso(release["start"]) + timedelta(seconds=30))
    before, after = (iso(parse_iso(release["start"]) - timedelta(seconds=1)),
                     iso(parse_iso(release["end"]) + timedelta(seconds=1)))
    for still, fault in (({"camera": "side-door", "at": inside}, "one of the release's cameras"),
                         ({"camera": "reading-room", "at": before}, "outside the release's window"),
                         ({"camera": "reading-room", "at": after}, "outside the release's window")):
        with pytest.raises(BadRequest, match=fault):
            people.call("director", "release.build", release=release["id"], to=str(medium), stills=[still], **TAKEN)
    assert list(medium.iterdir()) == [] and central.audit.query(action_prefix="release.build") == []


def test_C14_a_build_needs_counsel_recorded_for_its_own_instrument(central, people, tmp_path):
    """A release record whose counsel is another instrument's (altered since, or written by an older
    version) builds nothing: counsel about one order is no counsel about another (C14)."""
    _order, release = _release_of_unplayable_footage(central, people, "court_order")
    _other, other_release = _release_of_unplayable_footage(central, people, "court_order", camera="side-door")
    people.unseal()
    borrowed = dict(release, counsel=other_release["counsel"])
    borrowed.pop("id")
    borrowed_id = central.records.insert("releases", borrowed)
    medium = tmp_path / "usb"
    medium.mkdir()
    with pytest.raises(Refused) as e:
        people.call("director", "release.build", release=borrowed_id, to=str(medium), **TAKEN)
    assert e.value.clause == "C14"
    assert list(medium.iterdir()) == [] and central.audit.query(action_prefix="release.build") == []


def test_C11_a_release_is_never_built_onto_a_network_filesystem(central, people, tmp_path, monkeypatch):
    """The destination's filesystem is read from the kernel's mount table: one that lists it as an NFS
    share is refused (footage leaves on a medium handed over, never over the network); the same folder
    on a local disk starts a build."""
    from appliance.rules import retention

    _order, release = _release_of_unplayable_footage(central, people, "court_order")
    people.unseal()
    share = tmp_path / "nas"
    share.mkdir()
    mounts = tmp_path / "mounts"
    real = Path(retention.MOUNTS_FILE).read_text()
    monkeypatch.setattr(retention, "MOUNTS_FILE", str(mounts))
    mounts.write_text(real + f"nas.example:/export {share} nfs4 rw,vers=4.2 0 0\n")
    with pytest.raises(Refused) as e:
        people.call("director", "release.build", release=release["id"], to=str(share), **TAKEN)
    assert e.value.clause == "C11" and "nfs4" in str(e.value)
    assert list(share.iterdir()) == [] and central.audit.query(action_prefix="release.build") == []

    mounts.write_text(real + f"/dev/sdb1 {share} ext4 rw 0 0\n")
    started = people.call("director", "release.build", release=release["id"], to=str(share), **TAKEN)
    export_mod.wait_for(central, started["build"]["build"])   # it fails at ffmpeg (unplayable footage)


# --------------------------------------------------------------------------- encrypted, labelled, redacted


def test_encrypted_zip_opens_with_7z_and_verifies(world, tmp_path):
    started, status = build(world, tmp_path / "usb", encrypt=True, label=True,
                            redactions=[{"camera": "cam-a", "box": [0, 0, 40, 30]}])
    zip_path = Path(status["result"]["package"])
    passphrase = started["passphrase"]
    assert zip_path.suffix == ".zip" and len(passphrase) >= 30
    assert [p.name for p in zip_path.parent.iterdir()] == [zip_path.name]              # nothing else on the medium
    assert b"\x00\x00\x00\x01\x67" not in zip_path.read_bytes()                         # nothing in clear
    assert passphrase not in json.dumps(world["central"].records.get("exports", world["release"]["export"]))
    report = verify_package(zip_path, passphrase=passphrase)                             # read in place
    assert len(report.clips) == 3
    with pytest.raises(PackageFault):
        verify_package(zip_path, passphrase="WRONG-WRONG-WRONG")
    out = tmp_path / "opened"
    done = run("7z", "x", f"-p{passphrase}", f"-o{out}", str(zip_path))
    assert done.returncode == 0, done.stdout + done.stderr
    [folder] = list(out.iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    pieces = {p["file"]: p for c in manifest["cameras"] for p in c["pieces"]}
    assert pieces["video/cam-a-1.mp4"]["made"] == "reencoded"
    assert any("redaction" in f for f in pieces["video/cam-a-1.mp4"]["filters"])
    assert "burned-in label" in pieces["video/cam-b-1.mp4"]["filters"]
    assert verify_package(folder).release == world["release"]["id"]
    env = dict(os.environ, CUSTODIAN_EXPORT_PASSPHRASE=passphrase)
    cli = run(sys.executable, "-m", "appliance.cli", "export", "verify", str(zip_path), cwd=ROOT, env=env)
    assert cli.returncode == 0, cli.stdout + cli.stderr


def test_cli_export_build_shows_progress(world, tmp_path):
    sock = Path(world["tmp"] / "api.sock")
    with served(world):
        destination = tmp_path / "usb"
        destination.mkdir()
        env = dict(os.environ, CUSTODIAN_USER=DIRECTOR[0], CUSTODIAN_PASSPHRASE=DIRECTOR[1])
        done = run(sys.executable, "-m", "appliance.cli", "export", "build", world["release"]["id"],
                   "--to", str(destination), "--medium", TAKEN["medium"], "--taken-by", TAKEN["taken_by"],
                   "--socket", str(sock), "--poll", "0.05", cwd=ROOT, env=env, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        percents = [int(line[1:4]) for line in done.stdout.splitlines() if line.startswith("[")]
        assert percents == sorted(percents) and percents[-1] == 100 and len(set(percents)) >= 3, done.stdout
        assert "cam-a: segment" in done.stdout and "built" in done.stdout
        [package] = list(destination.iterdir())
        assert verify_package(package).segments == 5


async def test_tui_builds_a_release_and_shows_its_progress(world, tmp_path):
    import asyncio

    from tui.app import CustodianApp
    from tui.screens.home import HomeScreen
    from tui.screens.releases import BuildScreen, ReleasesScreen

    async def until(pilot, check, what, timeout=60.0):
        for _ in range(int(timeout / 0.05)):
            if check():
                return
            await pilot.pause(0.05)
        raise AssertionError(f"never: {what() if callable(what) else what}; on {type(pilot.app.screen).__name__}")

    destination = tmp_path / "usb"
    destination.mkdir()
    serving = served(world)
    await asyncio.to_thread(serving.__enter__)
    try:
        app = CustodianApp(str(world["tmp"] / "api.sock"))
        async with app.run_test(size=(80, 24)) as pilot:
            for text in (DIRECTOR[0], DIRECTOR[1]):
                for ch in text:
                    await pilot.press(ch if ch != "-" else "minus")
                await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen), "the home screen")
            await pilot.press("f11")
            await until(pilot, lambda: isinstance(app.screen, ReleasesScreen)
                        and app.screen.query_one("DataTable").row_count > 0, "the releases")
            table = app.screen.query_one("DataTable")
            row = next(i for i in range(table.row_count) if table.get_row_at(i)[0] == world["release"]["id"])
            table.move_cursor(row=row)
            await pilot.press("b")
            # Mounted too: a pushed screen is on top before its fields are (the TUI tests' CI flake).
            await until(pilot, lambda: isinstance(app.screen, BuildScreen) and app.screen.is_mounted, "the build form")
            screen = app.screen
            for field, text in (("#to", str(destination)), ("#medium", TAKEN["medium"]),
                                ("#taken-by", TAKEN["taken_by"])):
                screen.query_one(field).value = text
            assert "f5" in app.active_bindings
            await pilot.press("f5")
            await until(pilot, lambda: "Built" in str(screen.query_one("#outcome").render()),
                        lambda: f"built: {screen.seen} {screen.query_one('#outcome').render()}")
            assert "f5" not in app.active_bindings                                   # built: F5 would do nothing
            outcome = str(screen.query_one("#outcome").render())
    finally:
        await asyncio.to_thread(serving.__exit__, None, None, None)
    assert screen.seen[-1].startswith("[" + "#" * 30 + "] 100%"), screen.seen
    assert len(screen.seen) >= 2 and "100%" not in screen.seen[0], screen.seen    # shown from the start
    [package] = list(destination.iterdir())
    assert package.suffix == ".zip" and "Passphrase" in outcome                          # encrypted by default
    passphrase = outcome.split("Passphrase")[1].split("\n")[1].strip()
    assert verify_package(package, passphrase=passphrase).release == world["release"]["id"]


# --------------------------------------------------------------------------- holds (C12)


def test_C12_instrument_hold_stays_while_its_release_is_unbuilt_or_recently_built(world, package):
    central, people = world["central"], world["people"]
    start = world["start"]
    # A second instrument with a release nobody has built yet.
    other = people.call("director", "instrument.record", kind="court_order", reference="CO-77", court="District",
                        issued_on=central.now().date().isoformat(), received_on=central.now().date().isoformat(),
                        description="Entrance camera, one minute", cameras=["cam-a"], start=iso(start),
                        end=iso(start + timedelta(minutes=1)))
    people.call("director", "counsel.record", instrument=other["instrument"]["id"], counsel="J. Ortiz",
                consulted_on=central.now().date().isoformat(), summary="Fine.")
    people.call("director", "release.create", instrument=other["instrument"]["id"], cameras=["cam-a"],
                start=iso(start), end=iso(start + timedelta(minutes=1)), recipient="District attorney's office")
    with pytest.raises(Refused) as e:
        people.call("director", "hold.release", hold=other["hold"], reason="case closed")
    assert e.value.clause == "C12" and "not been built" in str(e.value)
    assert central.records.get("holds", other["hold"])["released_at"] is None
    with pytest.raises(BadRequest):                                                  # a reason, not a token
        people.call("director", "hold.release", hold=other["hold"], reason="case closed", override_reason="x")
    done = people.call("director", "hold.release", hold=other["hold"], reason="case closed",
                       override_reason="the court withdrew the order; counsel confirmed in writing")
    assert done["hold"]["released_at"]
    entry = central.audit.query(action_prefix="hold.release")[-1]
    assert entry["details"]["override_reason"].startswith("the court withdrew")

    # The module's release was built today: its hold stays for 30 days, then may go.
    hold = world["instrument"]["hold"]
    with pytest.raises(Refused) as e:
        people.call("director", "hold.release", hold=hold, reason="case closed")
    assert e.value.clause == "C12" and "30 days" in str(e.value)
    central.clock.offset += timedelta(days=31)
    try:
        people.login("director")
        assert people.call("director", "hold.release", hold=hold, reason="case closed")["hold"]["released_at"]
    finally:
        central.clock.offset -= timedelta(days=31)
        people.login("director")
        people.unseal()


# --------------------------------------------------------------------------- the canonical H.264 form


def test_canonical_form_is_what_ffmpeg_gives_back_from_an_mp4(tmp_path):
    """A hardware encoder may write 4-byte start codes everywhere; ffmpeg's MP4 round trip does not keep
    them. The builder hashes the canonical form, which is exactly what comes back."""
    x264 = encode("testsrc2", (96, 64), 3)
    long_codes = x264.replace(b"\x00\x00\x01", b"\x00\x00\x00\x01").replace(b"\x00\x00\x00\x00\x01",
                                                                            b"\x00\x00\x00\x01")
    for stream in (x264, long_codes):
        units = split_access_units(stream)
        canonical = b"".join(canonical_annexb(u.data)[0] for u in units)
        mp4 = subprocess.run(["ffmpeg", "-v", "error", "-fflags", "+genpts", "-r", str(FPS), "-f", "h264", "-i", "-",
                              "-c", "copy", "-movflags", export_mod.MOVFLAGS, "-f", "mp4", "-"],
                             input=stream, capture_output=True, check=True).stdout
        back = subprocess.run(["ffmpeg", "-v", "error", "-i", "-", "-c", "copy", "-bsf:v", "h264_mp4toannexb",
                               "-f", "h264", "-"], input=mp4, capture_output=True, check=True).stdout
        assert back == canonical
    assert canonical_annexb(split_access_units(x264)[0].data)[1] is False      # x264's own form is canonical
    assert long_codes != x264


def spec_canonical(unit: bytes) -> bytes:
    """The canonical form as docs/export-format.md words it, written out here without the builder's code."""
    starts = [i for i in range(len(unit) - 2) if unit[i:i + 3] == b"\x00\x00\x01"]
    nals = []
    for i, at in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(unit)
        if i + 1 < len(starts) and end > at + 3 and unit[end - 1] == 0:
            end -= 1                        # a single 00 before a start code belongs to that start code
        nals.append(unit[at + 3:end])
    return b"".join((b"\x00\x00\x00\x01" if i == 0 or (nal and nal[0] & 0x1F in (7, 8)) else b"\x00\x00\x01") + nal
                    for i, nal in enumerate(nals))


def test_the_one_scan_canonical_check_agrees_with_the_format(tmp_path):
    """canonical_annexb copies nothing for a unit it finds canonical in one scan; the scan must agree with the
    format's rule for pictures of several slices, 3- and 4-byte start codes anywhere, a zero byte before a
    start code, and a start code at the very end."""
    import random

    rng = random.Random(9)
    long_code, short_code = b"\x00\x00\x00\x01", b"\x00\x00\x01"

    def payload() -> bytes:
        return bytes(rng.choice((0, 1, 3, 0x41, 0x80, 0xFF)) for _ in range(rng.randint(0, 12)))

    units = [long_code + b"\x09\xf0" + short_code + b"\x41" + payload() + short_code + b"\x41" + payload(),
             long_code + b"\x09\xf0" + long_code + b"\x41" + payload(),                 # a 4-byte slice code
             long_code + b"\x09\xf0" + short_code + b"\x67\x42" + long_code + b"\x68",   # a 3-byte SPS code
             long_code + b"\x65" + payload() + short_code,                                 # a code at the very end
             short_code + b"\x09\xf0" + short_code + b"\x41\x00"]                          # a 3-byte first code
    for _ in range(3000):
        unit = rng.choice((long_code, short_code, b"\x00" + long_code, b""))
        for _n in range(rng.randint(1, 5)):
            unit += rng.choice((long_code, short_code)) + bytes([rng.choice((0x09, 0x41, 0x65, 0x67, 0x68, 0x06))])
            unit += payload()
        units.append(unit)
    rewritten = 0
    for unit in units:
        form, changed = canonical_annexb(unit)
        expected = spec_canonical(unit)
        assert (form, changed) == (expected, expected != unit), unit.hex()
        rewritten += changed
    assert 0 < rewritten < len(units)          # both kinds were tried


def test_stills_from_one_ffmpeg_run_are_the_pictures_one_run_each_gives():
    """A camera's stills are decoded in one ffmpeg run (its groups of pictures one after another): each is
    the very picture a run of its own gives, the last of its group."""
    from appliance.media import decode as media

    units = split_access_units(encode("testsrc2", (96, 64), 3))           # a keyframe every second
    gops = [[u.data for u in units[0:4]], [u.data for u in units[10:17]], [u.data for u in units[20:21]]]
    together = media.png_frames(gops, fps=FPS)
    alone = [media.png_frames([gop], fps=FPS)[0] for gop in gops]
    assert len(together) == 3 and together == alone
    assert len(set(together)) == 3 and all(png.startswith(b"\x89PNG") for png in together)
