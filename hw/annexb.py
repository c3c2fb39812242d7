"""Incremental Annex-B H.264 parser: bytes in, complete access units out.

An ffmpeg pipe delivers the elementary stream in arbitrary chunks; this parser finds
NAL unit start codes with ``bytes.find`` (C speed, no per-byte Python loop) and groups
NAL units into access units (one picture each) with the boundary rules of
ITU-T H.264 section 7.4.1.2.3, reduced to what an encoder actually emits:

* an access unit delimiter (type 9), or
* SEI, SPS, PPS (types 6, 7, 8, and 14-18) after a VCL NAL unit of the current unit, or
* a slice (type 1 or 5) whose ``first_mb_in_slice`` is 0 (the first bit after the NAL
  header byte is 1, since ue(v) codes 0 as a single ``1`` bit) after a VCL NAL unit
  of the current unit

starts a new access unit. An access unit is a keyframe when it holds an IDR slice
(type 5). A unit is only emitted once the header of the *next* unit has been seen
(or at ``flush()``), so a unit is never cut short.

The parser is byte-faithful: every byte fed comes out again in exactly one access
unit, in order (zero bytes in front of a start code go with the unit the start code
opens, so units start with ``00 00 00 01`` when the encoder wrote a 4-byte start
code). Joining the units gives back the input.
"""
from __future__ import annotations

from typing import NamedTuple

START_CODE = b"\x00\x00\x01"

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

_VCL = frozenset((NAL_SLICE, NAL_IDR))
# Non-VCL NAL units that, after a picture's slices, open the next access unit.
# (AUD opens one unconditionally; 14-18 are prefix/subset SPS/reserved types.)
_OPENS_AFTER_VCL = frozenset((NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD, 14, 15, 16, 17, 18))


class AccessUnit(NamedTuple):
    data: bytes      # the Annex-B bytes of one picture, start codes included
    keyframe: bool   # holds an IDR slice


class AnnexBParser:
    """Feed chunks of an Annex-B stream; get back complete access units.

    ``feed()`` returns the units completed by this chunk (possibly none); ``flush()``
    returns the last, still open unit at end of stream (or None if what is left holds
    no slice). Start codes (3- or 4-byte) may be split across ``feed()`` calls.
    """

    __slots__ = ("_buf", "_scan", "_au_start", "_au_vcl", "_au_key", "units", "bytes_in")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0          # where to look for the next start code
        self._au_start = 0      # offset in _buf of the open unit
        self._au_vcl = False    # the open unit holds a slice
        self._au_key = False    # ... an IDR slice
        self.units = 0          # access units emitted so far
        self.bytes_in = 0

    def feed(self, data: bytes) -> list[AccessUnit]:
        if not data:
            return []
        self.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[AccessUnit] = []
        find = buf.find
        end = len(buf)
        scan = self._scan
        while True:
            i = find(START_CODE, scan)
            if i < 0:
                # keep the last two bytes searchable: a start code may be split
                scan = max(scan, end - 2)
                break
            hdr = i + 3
            if hdr >= end:                     # need the NAL header byte
                scan = i
                break
            nal_type = buf[hdr] & 0x1F
            if nal_type in _VCL:
                if hdr + 1 >= end:             # need first_mb_in_slice's first bit
                    scan = i
                    break
                boundary = self._au_vcl and bool(buf[hdr + 1] & 0x80)
            else:
                boundary = self._au_vcl and nal_type in _OPENS_AFTER_VCL
            if boundary:
                cut = i
                # zero_byte / trailing_zero_8bits: a NAL unit never ends in 0x00, so the
                # zeros in front of the start code belong to the unit it opens
                while cut > self._au_start and buf[cut - 1] == 0:
                    cut -= 1
                out.append(AccessUnit(bytes(buf[self._au_start:cut]), self._au_key))
                self._au_start = cut
                self._au_vcl = False
                self._au_key = False
            if nal_type in _VCL:
                self._au_vcl = True
                if nal_type == NAL_IDR:
                    self._au_key = True
            scan = hdr
        # drop what has been emitted (once per feed: no quadratic copying)
        if self._au_start:
            del buf[: self._au_start]
            scan -= self._au_start
            self._au_start = 0
        self._scan = scan
        self.units += len(out)
        return out

    def flush(self) -> AccessUnit | None:
        """End of stream: return the open unit if it holds a picture, and reset.

        Bytes after the last picture that start no new picture (an end-of-stream NAL,
        for instance) are part of that picture's unit; a tail with no slice at all is
        dropped (it cannot be decoded as a frame).
        """
        unit = None
        if self._au_vcl:
            unit = AccessUnit(bytes(self._buf[self._au_start:]), self._au_key)
            self.units += 1
        self._buf = bytearray()
        self._scan = 0
        self._au_start = 0
        self._au_vcl = False
        self._au_key = False
        return unit


def _start_codes(data: bytes):
    """Offsets of every 3-byte start code in data."""
    i = data.find(START_CODE)
    while i >= 0:
        yield i
        i = data.find(START_CODE, i + 3)


def nal_units(data: bytes) -> list[tuple[int, bytes]]:
    """Split Annex-B bytes into (nal_type, nal_bytes_without_start_code) pairs."""
    starts = list(_start_codes(data))
    units = []
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(data)
        nal = bytes(data[i + 3:end]).rstrip(b"\x00") if n + 1 < len(starts) else bytes(data[i + 3:end])
        if nal:
            units.append((nal[0] & 0x1F, nal))
    return units


def picture_head(data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """One access unit's first slice type (NAL_IDR, NAL_SLICE, or 0 if it has no slice) and
    the NAL units in front of that slice, as (nal_type, nal_bytes_without_start_code).

    Only the unit's head is scanned (delimiter, SEI, SPS, PPS: a few hundred bytes), never
    the slices, so an access unit that arrives already framed costs almost nothing here.
    """
    head = []
    i = data.find(START_CODE)
    while i >= 0 and i + 3 < len(data):
        nal_type = data[i + 3] & 0x1F
        if nal_type in _VCL:
            return nal_type, head
        nxt = data.find(START_CODE, i + 3)
        head.append((nal_type, data[i + 3:nxt if nxt >= 0 else len(data)].rstrip(b"\x00")))
        i = nxt
    return 0, head


def nal_types(data: bytes) -> list[int]:
    """The NAL unit types in Annex-B bytes, in order (for checks and tests)."""
    return [t for t, _ in nal_units(data)]


def split_access_units(data: bytes) -> list[AccessUnit]:
    """Parse a whole Annex-B stream at once."""
    p = AnnexBParser()
    units = p.feed(data)
    last = p.flush()
    if last is not None:
        units.append(last)
    return units
