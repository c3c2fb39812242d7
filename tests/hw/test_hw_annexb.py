"""hw.annexb: the incremental Annex-B parser, on real x264 output made by ffmpeg here."""
from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest

from hw.annexb import AnnexBParser, nal_types, split_access_units

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg and ffprobe")


def x264(*params: str, seconds: int = 3) -> bytes:
    """testsrc2 encoded by libx264 to raw Annex-B, in a pipe."""
    argv = ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-g", "10", "-keyint_min", "10", "-sc_threshold", "0", *params, "-f", "h264", "pipe:"]
    return subprocess.run(argv, check=True, capture_output=True, timeout=60).stdout


def ffprobe_packets(data: bytes) -> list[tuple[int, bool]]:
    """ffmpeg's own h264 parser: (size, keyframe) of every access unit."""
    out = subprocess.run(["ffprobe", "-v", "error", "-f", "h264", "-i", "pipe:", "-show_packets",
                          "-show_entries", "packet=size,flags", "-of", "json"],
                         input=data, check=True, capture_output=True, timeout=60).stdout
    return [(int(p["size"]), "K" in p["flags"]) for p in json.loads(out)["packets"]]


@pytest.fixture(scope="module")
def streams() -> dict[str, bytes]:
    return {
        # what the ffmpeg backends produce: AUD before every frame, SPS/PPS before every IDR
        "aud": x264("-x264-params", "repeat-headers=1:aud=1"),
        # no AUD and several slices per frame: boundaries come from first_mb_in_slice
        "slices": x264("-x264-params", "repeat-headers=1:slices=4"),
    }


@pytest.mark.parametrize("kind", ["aud", "slices"])
def test_access_units_match_ffmpegs_parser(streams, kind):
    data = streams[kind]
    units = split_access_units(data)
    assert [(len(u.data), u.keyframe) for u in units] == ffprobe_packets(data)
    assert len(units) == 30
    assert b"".join(u.data for u in units) == data            # byte-faithful


def test_multi_slice_frames_stay_whole(streams):
    units = split_access_units(streams["slices"])
    for u in units:
        slices = [t for t in nal_types(u.data) if t in (1, 5)]
        assert len(slices) >= 2                                  # really several slices per frame
        assert (5 in slices) == u.keyframe


def test_keyframes_carry_sps_and_pps(streams):
    units = split_access_units(streams["aud"])
    keys = [i for i, u in enumerate(units) if u.keyframe]
    assert keys == [0, 10, 20]
    for i in keys:
        types = nal_types(units[i].data)
        assert types[:3] == [9, 7, 8] and 5 in types
        assert units[i].data.startswith(b"\x00\x00\x00\x01")      # 4-byte start code kept with its unit
    assert all(nal_types(u.data)[0] == 9 for u in units)


@pytest.mark.parametrize("kind", ["aud", "slices"])
def test_any_chunking_gives_the_same_units(streams, kind):
    data = streams[kind]
    expected = split_access_units(data)
    rng = random.Random(7)
    for sizes in ([1], [2], [3], [5], [4096], [1, 2, 3, 4, 5, 6, 7], None):
        parser = AnnexBParser()
        got = []
        pos = 0
        n = 0
        while pos < len(data):
            step = rng.randint(1, 20000) if sizes is None else sizes[n % len(sizes)]
            got += parser.feed(data[pos:pos + step])
            pos += step
            n += 1
        last = parser.flush()
        assert last is not None
        got.append(last)
        assert got == expected, sizes


def test_start_code_split_at_every_offset():
    """Hand-made stream: 3- and 4-byte start codes, SEI after a slice, EOS NAL; every cut point."""
    sps, pps, sei = b"\x67\x42\x00\x1e\xab", b"\x68\xce\x3c\x80", b"\x06\x05\x01\xff\x80"
    idr, p_first, p_second = b"\x65\x88\x84\x00\x33", b"\x41\x9a\x02", b"\x41\x40\x9a\x11"   # 0x40: first_mb != 0
    sc4, sc3 = b"\x00\x00\x00\x01", b"\x00\x00\x01"
    au1 = sc4 + sps + sc4 + pps + sc3 + idr
    au2 = sc4 + sei + sc3 + p_first + sc3 + p_second          # SEI after a slice opens a new unit
    au3 = sc3 + p_first + sc3 + b"\x0b"                           # first_mb 0 opens; EOS stays with it
    data = au1 + au2 + au3
    want = [(au1, True), (au2, False), (au3, False)]
    for cut in range(len(data) + 1):
        p = AnnexBParser()
        got = p.feed(data[:cut]) + p.feed(data[cut:])
        got.append(p.flush())
        assert [(u.data, u.keyframe) for u in got] == want, cut


def test_feed_returns_only_complete_units(streams):
    data = streams["aud"]
    units = split_access_units(data)
    first_len = len(units[0].data)
    p = AnnexBParser()
    assert p.feed(data[:first_len]) == []                     # the next unit has not begun yet
    assert p.feed(data[first_len:first_len + 4]) == []        # its start code is not whole yet
    assert p.feed(data[first_len + 4:first_len + 6]) == [units[0]]
    rest = p.feed(data[first_len + 6:])
    assert rest == units[1:-1]
    assert p.flush() == units[-1]
    assert p.flush() is None                                   # reset after flush


def test_tail_without_a_picture_is_not_a_frame():
    p = AnnexBParser()
    assert p.feed(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x67\x42") == []
    assert p.flush() is None
