"""`custodian segment verify`: structure, signatures and chain of a set of segment files.

Files are grouped by camera and ordered by sequence number. Each must verify on
its own; consecutive ones must chain (`prev` = the SHA-256 of the previous file);
a missing sequence number, a truncated segment or a chain break is reported as a
fault. Needs no decryption key.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import nacl.signing

from appliance.errors import SegmentError
from appliance.formats.segment import KeyLookup, SegmentInfo, enrolled_key, header_key, verify_file


@dataclass
class ChainCheck:
    """What a set of segment files says about itself."""

    verified: list[tuple[SegmentInfo, Path]] = field(default_factory=list)   # by camera, then sequence
    failures: list[tuple[Path, str]] = field(default_factory=list)           # did not verify
    breaks: list[tuple[Path, str]] = field(default_factory=list)             # duplicates, chain breaks
    gaps: list[tuple[str, int, int]] = field(default_factory=list)           # camera, first, last missing

    @property
    def truncated(self) -> list[SegmentInfo]:
        return [info for info, _ in self.verified if not info.complete]

    @property
    def ok(self) -> bool:
        return not (self.failures or self.breaks or self.gaps or self.truncated)


def check_segments(files: list[Path], lookup: KeyLookup = header_key) -> ChainCheck:
    check = ChainCheck()
    by_camera: dict[str, list[tuple[SegmentInfo, Path]]] = defaultdict(list)
    for path in files:
        try:
            info = verify_file(path, lookup)
        except (OSError, SegmentError) as e:
            check.failures.append((path, str(e)))
            continue
        by_camera[info.camera].append((info, path))
    for camera, items in sorted(by_camera.items()):
        items.sort(key=lambda item: item[0].seq)
        check.verified.extend(items)
        for (prev, _), (info, path) in zip(items, items[1:]):
            if info.seq == prev.seq:
                check.breaks.append((path, f"{camera} #{info.seq} appears twice"))
            elif info.seq != prev.seq + 1:
                check.gaps.append((camera, prev.seq + 1, info.seq - 1))
            elif info.header["prev"] != prev.digest:
                check.breaks.append((path, f"{camera} #{info.seq} does not chain to #{prev.seq}"))
    return check


def verify_segments(files: list[Path], node_key: bytes | None, out: TextIO) -> bool:
    lookup = header_key if node_key is None else enrolled_key(nacl.signing.VerifyKey(node_key))
    check = check_segments(files, lookup)
    for path, error in check.failures:
        print(f"FAIL {path}: {error}", file=out)
    for info, path in check.verified:
        state = "ok" if info.complete else f"TRUNCATED ({info.trailer.get('truncated_reason')})"
        print(f"{state:>4} {path}: {info.camera} #{info.seq} {info.size} bytes", file=out)
    for path, problem in check.breaks:
        print(f"FAIL {path}: {problem}", file=out)
    for camera, first, last in check.gaps:
        print(f"GAP  {camera}: segments {first}..{last} are missing", file=out)
    print("verified: all good" if check.ok else "verified: FAULTS FOUND", file=out)
    return check.ok
