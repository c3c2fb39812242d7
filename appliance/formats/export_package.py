"""Checking an evidence package with nothing but the package: no Custodian key, no records.

The format is docs/export-format.md; the builder is appliance/rules/export.py. A package is
a directory (or the same tree inside an AES-256 ZIP) holding MP4 clips, PNG stills,
the camera-signed headers and trailers of the source segments, `manifest.json`
signed by the appliance key (`manifest.sig`, `appliance-key.pem`), `SHA256SUMS`, a
custody report and a README. `verify_package` checks, in this order, and stops at
the first fault:

1. the layout: the fixed files are there, nothing is left unlisted;
2. `manifest.sig` is the appliance key's Ed25519 signature over `manifest.json`
   (and that key is the one the caller pinned, when one was given);
3. `SHA256SUMS` is the file the manifest names, and every file matches its line;
4. every source segment's header and trailer carry the camera's signature, name the
   segment the manifest says, and chain (`prev`) to the segment before them;
5. every stream-copied MP4, turned back into Annex-B by ffmpeg, is byte for byte the
   decrypted segments' H.264 whose digests the manifest records, segment by segment;
   a re-encoded one (burned-in label, redaction) has the recorded number of pictures.

Also home to `canonical_annexb`, the one byte form of an access unit that both the
builder hashes and ffmpeg gives back from an MP4 (see the format doc).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import subprocess
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

import nacl.exceptions
import nacl.signing

from appliance.formats.canonical import CanonicalError, parse_canonical

FORMAT = "custodian-export"
VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SUMS = "SHA256SUMS"
APPLIANCE_KEY = "appliance-key.pem"
REPORT = "custody-report.pdf"
README = "README.txt"
UNSUMMED = (MANIFEST, SIGNATURE, SUMS)          # the only files SHA256SUMS does not list
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")   # RFC 8410, as appliance.custody.keys
START_CODE = b"\x00\x00\x01"
PARAMETER_SETS = (7, 8)                          # SPS, PPS
SUMS_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$")
SAFE_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
FFMPEG_TIMEOUT = 3600
BLOCK = 1024 * 1024


class PackageFault(Exception):
    """The first thing wrong with a package, said so that a person can find it."""


# --------------------------------------------------------------------------- the canonical Annex-B form


def nal_units(unit: bytes) -> list[bytes]:
    """The NAL units of one Annex-B access unit, without start codes.

    A NAL unit runs from after a `00 00 01` to the next one; a zero byte just before a
    start code belongs to that (4-byte) start code, as ffmpeg reads it.
    """
    starts = [m.start() for m in re.finditer(START_CODE, unit)]
    nals = []
    for i, at in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(unit)
        if i + 1 < len(starts) and end > at + 3 and unit[end - 1] == 0:
            end -= 1
        nals.append(unit[at + 3:end])
    return nals


def canonical_annexb(unit: bytes) -> tuple[bytes, bool]:
    """(canonical form, whether any start code was rewritten) of one access unit.

    Canonical: every NAL unit after `00 00 00 01` when it is the unit's first or an
    SPS or PPS, else after `00 00 01`. That is the form ffmpeg's h264_mp4toannexb
    writes, and the form x264 (the nodes' software encoder) already emits, so for our
    cameras it is usually the identity.
    """
    if _is_canonical(unit):
        return unit, False
    out = bytearray()
    for i, nal in enumerate(nal_units(unit)):
        long = i == 0 or (nal and nal[0] & 0x1F in PARAMETER_SETS)
        out += (b"\x00" + START_CODE if long else START_CODE) + nal
    return (unit, False) if out == unit else (bytes(out), True)


def _is_canonical(unit: bytes) -> bool:
    """The same answer as building the canonical form and comparing, without copying.

    Each `find` scans in C from one start code to the next, so the unit is scanned once
    in all (counting the start codes first scanned it twice when a picture has several
    slices, as x264's sliced threads make: that was a third of the clip's Python time).
    """
    if not unit.startswith(b"\x00" + START_CODE):
        return False
    at = 1
    while (at := unit.find(START_CODE, at + 3)) >= 0:
        if at + 3 >= len(unit) or (unit[at - 1] == 0) != (unit[at + 3] & 0x1F in PARAMETER_SETS):
            return False
    return True


# --------------------------------------------------------------------------- reading a package


class PackageSource:
    """The files of a package, by path inside it ("video/cam-a-1.mp4")."""

    label: str

    def names(self) -> list[str]:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def size(self, name: str) -> int:
        size = 0
        with self.open(name) as f:
            while block := f.read(BLOCK):
                size += len(block)
        return size

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        with self.open(name) as f:
            while block := f.read(BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def close(self) -> None:
        pass


class DirectorySource(PackageSource):
    def __init__(self, root: Path):
        self.root = Path(root)
        self.label = str(self.root)

    def names(self) -> list[str]:
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                found.append((Path(dirpath) / name).relative_to(self.root).as_posix())
        return sorted(found)

    def open(self, name: str) -> BinaryIO:
        if not isinstance(name, str) or not SAFE_PATH.match(name):   # a manifest's name stays inside the package
            raise PackageFault(f"{name!r} is not a path inside the package")
        return open(self.root / name, "rb")


class ZipSource(PackageSource):
    """An encrypted package: one top folder inside an AES-256 ZIP. Read in place: nothing is extracted."""

    def __init__(self, path: Path, passphrase: str):
        import pyzipper

        self.label = str(path)
        try:
            self.zip = pyzipper.AESZipFile(path)
        except (OSError, EOFError, ValueError, NotImplementedError, zipfile.BadZipFile, pyzipper.BadZipFile) as e:
            raise PackageFault(f"{path} is not a readable ZIP file ({e})") from None
        self.zip.setpassword(passphrase.encode("utf-8"))
        tops = {(PurePosixPath(n).parts or ("",))[0] for n in self.zip.namelist()}
        if len(tops) != 1 or not SAFE_PATH.match(next(iter(tops))):
            self.zip.close()
            raise PackageFault(f"{path} must hold exactly one package folder, not {sorted(tops)[:5]}")
        self.top = tops.pop()

    def names(self) -> list[str]:
        prefix = self.top + "/"
        return sorted(n[len(prefix):] for n in self.zip.namelist() if n.startswith(prefix) and not n.endswith("/"))

    def open(self, name: str) -> BinaryIO:
        if not isinstance(name, str) or not SAFE_PATH.match(name):
            raise PackageFault(f"{name!r} is not a path inside the package")
        try:
            return self.zip.open(f"{self.top}/{name}")
        except RuntimeError as e:       # pyzipper: bad password
            raise PackageFault(f"cannot open {name} in {self.label}: {e} (wrong passphrase?)") from None

    def close(self) -> None:
        self.zip.close()


def open_package(path: Path, passphrase: str | None = None) -> PackageSource:
    path = Path(path)
    if path.is_dir():
        return DirectorySource(path)
    if path.is_file():
        if not passphrase:
            raise PackageFault(f"{path} is an encrypted package: its passphrase is needed")
        return ZipSource(path, passphrase)
    raise PackageFault(f"{path} does not exist")


# --------------------------------------------------------------------------- keys


def pem_public_key(pem: bytes, what: str) -> nacl.signing.VerifyKey:
    """An Ed25519 SubjectPublicKeyInfo PEM (as `openssl pkey -pubout` writes it) as a key."""
    text = pem.decode("ascii", "replace").strip().splitlines()
    if len(text) < 3 or text[0] != "-----BEGIN PUBLIC KEY-----" or text[-1] != "-----END PUBLIC KEY-----":
        raise PackageFault(f"{what} is not a PEM public key")
    try:
        der = base64.b64decode("".join(text[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise PackageFault(f"{what} is not valid base64 PEM") from None
    if len(der) != 44 or not der.startswith(ED25519_SPKI_PREFIX):
        raise PackageFault(f"{what} is not an Ed25519 public key")
    return nacl.signing.VerifyKey(der[len(ED25519_SPKI_PREFIX):])


def _check_signature(key: nacl.signing.VerifyKey, message: bytes, signature: bytes, what: str) -> None:
    try:
        key.verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise PackageFault(f"{what}: the signature does not verify") from None


# --------------------------------------------------------------------------- the checks


@dataclass
class Report:
    package: str
    release: str = ""
    key_sha256: str = ""
    files: int = 0
    segments: int = 0
    clips: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def verify_package(path: Path, *, passphrase: str | None = None, pinned_key: bytes | None = None,
                   say: Callable[[str], None] = lambda line: None) -> Report:
    """Check everything a package claims; raise PackageFault naming the first fault."""
    source = open_package(path, passphrase)
    try:
        return _verify(source, pinned_key, say)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError, binascii.Error) as e:
        # Only a manifest signed by the key in the package gets this far: malformed, not forged.
        raise PackageFault(f"manifest.json is signed but malformed ({type(e).__name__}: {e})") from None
    except (OSError, EOFError, NotImplementedError, zipfile.BadZipFile, _pyzipper_bad_zip()) as e:
        # A file of the package cannot be read (a ZIP entry failing its CRC, an unknown compression).
        raise PackageFault(f"cannot read the package: {e}") from None
    finally:
        source.close()


def _pyzipper_bad_zip() -> type:
    import pyzipper

    return pyzipper.BadZipFile


def _verify(source: PackageSource, pinned_key: bytes | None, say) -> Report:
    report = Report(source.label)

    def ok(line: str) -> None:
        report.lines.append(line)
        say(line)

    names = source.names()
    for fixed in (MANIFEST, SIGNATURE, SUMS, APPLIANCE_KEY):
        if fixed not in names:
            raise PackageFault(f"{fixed} is missing")
    key = pem_public_key(source.read(APPLIANCE_KEY), APPLIANCE_KEY)
    report.key_sha256 = hashlib.sha256(key.encode()).hexdigest()
    if pinned_key is not None and key.encode() != pinned_key:
        raise PackageFault(f"{APPLIANCE_KEY} is not the appliance key you expected (its SHA-256 is "
                           f"{report.key_sha256})")
    manifest_bytes = source.read(MANIFEST)
    _check_signature(key, manifest_bytes, source.read(SIGNATURE), MANIFEST)
    ok(f"manifest.json is signed by the appliance key (SHA-256 of the raw key {report.key_sha256})")
    manifest = _manifest(manifest_bytes)
    report.release = manifest["release"]["id"]

    sums_bytes = source.read(SUMS)
    if hashlib.sha256(sums_bytes).hexdigest() != manifest["sha256sums"]:
        raise PackageFault("SHA256SUMS is not the file the signed manifest names")
    listed = _sums(sums_bytes)
    unlisted = sorted(set(names) - set(listed) - set(UNSUMMED))
    if unlisted:
        raise PackageFault(f"{unlisted[0]} is in the package but not in SHA256SUMS")
    for name, want in listed.items():
        if name not in names:
            raise PackageFault(f"{name} is listed in SHA256SUMS but missing")
        if source.sha256(name) != want:
            raise PackageFault(f"{name} does not match its SHA-256 in SHA256SUMS")
    report.files = len(listed)
    if manifest["files"] != len(listed):
        raise PackageFault(f"the manifest says SHA256SUMS lists {manifest['files']} files; it lists {len(listed)}")
    ok(f"SHA256SUMS is the one the manifest names; all {len(listed)} files match it")
    # What the manifest says of a file is what SHA256SUMS (so the file) says of it.
    described = [(p["file"], p["sha256"], p["bytes"]) for c in manifest["cameras"] for p in c["pieces"]]
    described += [(s["file"], s["sha256"], None) for s in manifest["stills"] if s.get("file") is not None]
    for name, sha256, size in described:
        if listed.get(name) != sha256:
            raise PackageFault(f"the manifest's SHA-256 for {name} is not its SHA-256 in SHA256SUMS")
        if size is not None and source.size(name) != size:
            raise PackageFault(f"the manifest gives {name} a size of {size} bytes; it has {source.size(name)}")

    for camera in manifest["cameras"]:
        node_key = pem_public_key(source.read(camera["node_key_pem"]), camera["node_key_pem"])
        if node_key.encode().hex() != camera["node_key"]:
            raise PackageFault(f"{camera['node_key_pem']} is not the node key the manifest names for "
                               f"{camera['camera']}")
        for piece in camera["pieces"]:
            report.segments += _check_segments(source, camera, piece, node_key)
            _check_clip(source, piece)
            report.clips.append(piece["file"])
            how = ("is the segments' H.264, byte for byte" if piece["made"] == "stream_copy"
                   else f"was re-encoded ({', '.join(piece['filters'])}): {piece['frames']} pictures, as recorded")
            ok(f"{piece['file']} {how} ({len(piece['segments'])} camera-signed segment(s))")
    ok(f"package {report.release} verifies: {report.files} files, {report.segments} segments, "
       f"{len(report.clips)} clip(s)")
    return report


def _manifest(data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise PackageFault(f"manifest.json is not JSON this checker reads ({str(e)[:120]})") from None
    if not isinstance(manifest, dict) or manifest.get("type") != FORMAT:
        raise PackageFault("manifest.json is not a Custodian export manifest")
    if manifest.get("v") != VERSION:
        raise PackageFault(f"manifest.json is format version {manifest.get('v')}; this verifier reads {VERSION}")
    return manifest


def _sums(data: bytes) -> dict[str, str]:
    listed = {}
    for n, line in enumerate(data.decode("ascii", "replace").splitlines(), start=1):
        m = SUMS_LINE.match(line)
        if m is None or not SAFE_PATH.match(m.group(2)) or m.group(2) in listed:
            raise PackageFault(f"SHA256SUMS line {n} is not '<sha256>  <path>'")
        listed[m.group(2)] = m.group(1)
    return listed


def _check_segments(source: PackageSource, camera: dict, piece: dict, node_key) -> int:
    previous = None
    for s in piece["segments"]:
        where = f"{camera['camera']} segment {s['seq']}"
        header_bytes, trailer_bytes = source.read(s["header"]), source.read(s["trailer"])
        _check_signature(node_key, header_bytes, base64.b64decode(s["header_signature"]), f"{where} header")
        _check_signature(node_key, trailer_bytes, base64.b64decode(s["trailer_signature"]), f"{where} trailer")
        for name, sig in ((s["header"], s["header_signature"]), (s["trailer"], s["trailer_signature"])):
            sig_file = name.removesuffix(".json") + ".sig"
            if source.read(sig_file) != base64.b64decode(sig):
                raise PackageFault(f"{sig_file} is not the signature the manifest records")
        try:
            header, trailer = parse_canonical(header_bytes), parse_canonical(trailer_bytes)
        except CanonicalError as e:
            raise PackageFault(f"{where}: header or trailer is not canonical JSON ({e})") from None
        if not (isinstance(header, dict) and isinstance(trailer, dict)):
            raise PackageFault(f"{where}: the signed header or trailer is not a JSON object")
        if (header.get("type"), trailer.get("type")) != ("cseg-header", "cseg-trailer"):
            raise PackageFault(f"{where}: not a segment header and trailer")
        for doc in (header, trailer):
            if (doc.get("camera"), doc.get("seq")) != (camera["camera"], s["seq"]):
                raise PackageFault(f"{where}: the signed header or trailer names another segment")
        if header.get("node_key") != camera["node_key"]:
            raise PackageFault(f"{where}: the header names another node key")
        if previous is not None and header.get("prev") != previous:
            raise PackageFault(f"{where} does not chain to segment {s['seq'] - 1}: its signed prev is not the "
                               "digest the manifest records for it")
        previous = s["digest"]
    return len(piece["segments"])


def _check_clip(source: PackageSource, piece: dict) -> None:
    if piece["made"] != "stream_copy":
        frames = _count_pictures(source, piece["file"])
        if frames != piece["frames"]:
            raise PackageFault(f"{piece['file']} holds {frames} pictures; the manifest says {piece['frames']}")
        return
    # The MP4 back to Annex-B, cut where the manifest says each segment's part ends.
    cuts = [(s["seq"], s["annexb"]["bytes"], s["annexb"]["sha256"]) for s in piece["segments"]]
    offset = 0
    for s in piece["segments"]:      # the spec's shell check cuts at annexb.offset: it must be where the part lies
        if s["annexb"]["offset"] != offset:
            raise PackageFault(f"{piece['file']}: segment {s['seq']}'s annexb.offset is {s['annexb']['offset']}, "
                               f"but its part of the clip starts at byte {offset}")
        offset += s["annexb"]["bytes"]
    whole = hashlib.sha256()
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", "pipe:0", "-map", "0:v:0",
            "-c", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", "pipe:1"]
    index, in_segment, digest = 0, 0, hashlib.sha256()
    total = 0
    with _piped(argv, source, piece["file"]) as out:
        while block := out.read(BLOCK):
            whole.update(block)
            total += len(block)
            view = memoryview(block)
            while view:
                if index >= len(cuts):
                    raise PackageFault(f"{piece['file']} holds more H.264 than its segments")
                take = min(len(view), cuts[index][1] - in_segment)
                digest.update(view[:take])
                in_segment += take
                view = view[take:]
                if in_segment == cuts[index][1]:
                    if digest.hexdigest() != cuts[index][2]:
                        raise PackageFault(f"{piece['file']} does not match segment {cuts[index][0]}: its part of "
                                           "the MP4 is not the H.264 decrypted from that segment (re-cut or altered)")
                    index, in_segment, digest = index + 1, 0, hashlib.sha256()
    if index != len(cuts) or whole.hexdigest() != piece["annexb"]["sha256"] or total != piece["annexb"]["bytes"]:
        raise PackageFault(f"{piece['file']} ends before its segments do: it was cut short or re-cut")


def _count_pictures(source: PackageSource, name: str) -> int:
    argv = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
            "stream=nb_read_packets", "-of", "csv=p=0", "pipe:0"]
    with _piped(argv, source, name) as out:
        text = out.read().decode().strip()
    try:
        return int(text)
    except ValueError:
        raise PackageFault(f"ffprobe could not count the pictures of {name}") from None


class _piped:
    """Run argv with a package file on its stdin (fed from a thread); yield its stdout."""

    def __init__(self, argv: list[str], source: PackageSource, name: str):
        self.argv, self.source, self.name = argv, source, name

    def __enter__(self):
        env = {k: v for k, v in os.environ.items() if k != "FFREPORT"}
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env, cwd="/")
        except FileNotFoundError:
            raise PackageFault(f"{self.argv[0]} is not installed: it is needed to check the clips") from None
        self.errors: list[bytes] = []
        self.feeder = threading.Thread(target=self._feed, daemon=True)
        self.feeder.start()
        self.stderr = threading.Thread(target=lambda: self.errors.append(self.proc.stderr.read()), daemon=True)
        self.stderr.start()
        return self.proc.stdout

    def _feed(self) -> None:
        try:
            with self.source.open(self.name) as f:
                while block := f.read(BLOCK):
                    self.proc.stdin.write(block)
        except Exception:   # noqa: BLE001  (unreadable: the tool then fails on what it got, and says so)
            pass
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def __exit__(self, kind, value, tb):
        try:
            if kind is not None:
                self.proc.kill()
            self.proc.stdout.read()
            code = self.proc.wait(timeout=FFMPEG_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise PackageFault(f"{self.argv[0]} did not finish reading {self.name}") from None
        finally:
            self.feeder.join(10)
            self.stderr.join(10)
        if kind is None and code != 0:
            detail = b"".join(self.errors).decode("utf-8", "replace").strip().splitlines()
            raise PackageFault(f"{self.argv[0]} cannot read {self.name}: {detail[-1] if detail else code}")
        return False
