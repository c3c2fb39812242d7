"""`custodian segment verify`: structure, signatures and chain of a set of segment files.

Files are grouped by camera and ordered by sequence number. Each must verify on
its own; consecutive ones must chain (`prev` = the SHA-256 of the previous file);
a missing sequence number, a truncated segment or a chain break is reported as a
fault. Needs no decryption key.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TextIO

import nacl.signing

from .errors import SegmentError
from .segment import SegmentInfo, header_key, verify_file


def _lookup(node_key: bytes | None):
    if node_key is None:
        return header_key
    key = nacl.signing.VerifyKey(node_key)

    def lookup(camera: str, header: dict):
        if header.get("node_key") != node_key.hex():
            raise SegmentError("signed by a different key than the one given", kind="signature")
        return key
    return lookup


def verify_segments(files: list[Path], node_key: bytes | None, out: TextIO) -> bool:
    ok = True
    by_camera: dict[str, list[tuple[SegmentInfo, Path]]] = defaultdict(list)
    lookup = _lookup(node_key)
    for path in files:
        try:
            info = verify_file(path, lookup)
        except (OSError, SegmentError) as e:
            print(f"FAIL {path}: {e}", file=out)
            ok = False
            continue
        by_camera[info.camera].append((info, path))
        state = "ok" if info.complete else f"TRUNCATED ({info.trailer.get('truncated_reason')})"
        print(f"{state:>4} {path}: {info.camera} #{info.seq} {info.size} bytes", file=out)
        if not info.complete:
            ok = False
    for camera, items in sorted(by_camera.items()):
        items.sort(key=lambda item: item[0].seq)
        for (prev, _), (info, path) in zip(items, items[1:]):
            if info.seq == prev.seq:
                print(f"FAIL {path}: {camera} #{info.seq} appears twice", file=out)
                ok = False
            elif info.seq != prev.seq + 1:
                print(f"GAP  {camera}: segments {prev.seq + 1}..{info.seq - 1} are missing", file=out)
                ok = False
            elif info.header["prev"] != prev.digest:
                print(f"FAIL {path}: {camera} #{info.seq} does not chain to #{prev.seq}", file=out)
                ok = False
        print(f"{camera}: {len(items)} segment(s), #{items[0][0].seq}..#{items[-1][0].seq}", file=out)
    print("verified: all good" if ok else "verified: FAULTS FOUND", file=out)
    return ok
