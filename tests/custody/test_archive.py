"""The archive tree as the index: reloading from disk, range queries, a clock that steps back."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import nacl.public
import nacl.signing
import pytest

from appliance.formats import segment as seg
from appliance.custody.archive import Archive
from appliance.errors import SegmentError
from hw.backend import Frame

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def keys():
    return nacl.public.PrivateKey.generate(), nacl.signing.SigningKey.generate()


def store(archive: Archive, keys, seq: int, prev: str | None, start: datetime, tmp_path) -> str:
    path = tmp_path / f"w{seq}.cseg"
    w = seg.SegmentWriter(path, params=seg.StreamParams("cam", 64, 48, 10), seq=seq, prev_digest=prev,
                          archive_key=keys[0].public_key, signing_key=keys[1], chunk_bytes=2048,
                          start_us=int(start.timestamp() * 1_000_000))
    w.write_frame(Frame(b"\x00\x00\x00\x01\x65" + os.urandom(300), True, seq))
    info = w.close()
    tmp = archive.incoming_path("cam", seq)
    os.replace(path, tmp)
    archive.commit(tmp, seg.verify_file(tmp))
    return info.digest


def test_reloaded_index_knows_the_head_ranges_and_chain(tmp_path, keys):
    root = tmp_path / "archive"
    archive = Archive(root)
    prev = None
    starts = [T0 + timedelta(minutes=i) for i in range(5)]
    starts[3] = T0 + timedelta(seconds=30)   # the clock stepped back (NTP sync on a Pi without RTC)
    for seq, start in enumerate(starts):
        prev = store(archive, keys, seq, prev, start, tmp_path)
    again = Archive(root)
    assert again.head("cam") == 4 and again.cameras() == ["cam"]
    assert again.digest("cam", 4) == prev
    assert [s.seq for s in again.segments("cam")] == [0, 1, 2, 3, 4]
    assert all(s.path.exists() for s in again.segments("cam"))
    window = [s.seq for s in again.segments("cam", start=T0 + timedelta(minutes=1, seconds=10),
                                            end=T0 + timedelta(minutes=2, seconds=5))]
    assert 1 in window and 2 in window and 0 not in window
    # The chain continues across the reload; a segment that does not chain is refused.
    store(again, keys, 5, prev, T0 + timedelta(minutes=6), tmp_path)
    with pytest.raises(SegmentError, match="does not chain"):
        store(again, keys, 6, "00" * 32, T0 + timedelta(minutes=7), tmp_path)


def test_removing_the_newest_segment_keeps_its_place_in_the_chain(tmp_path, keys):
    archive = Archive(tmp_path / "archive")
    d0 = store(archive, keys, 0, None, T0, tmp_path)
    d1 = store(archive, keys, 1, d0, T0 + timedelta(minutes=1), tmp_path)
    archive.remove(archive.get("cam", 1))
    assert archive.get("cam", 1) is None and archive.digest("cam", 0) == d0
    assert archive.head("cam") == 1 and archive.digest("cam", 1) == d1


def test_the_chain_outlives_footage_retention_deleted(tmp_path, keys):
    root = tmp_path / "archive"
    archive = Archive(root)
    prev = None
    for seq in range(3):
        prev = store(archive, keys, seq, prev, T0 + timedelta(minutes=seq), tmp_path)
    for stored in list(archive.segments("cam")):
        archive.remove(stored)
    reloaded = Archive(root)
    assert reloaded.head("cam") == 2 and list(reloaded.segments("cam")) == []
    with pytest.raises(SegmentError, match="replayed"):   # an old segment cannot come back
        store(reloaded, keys, 1, "ab" * 32, T0 + timedelta(minutes=1), tmp_path)
    with pytest.raises(SegmentError, match="does not chain"):
        store(reloaded, keys, 3, "00" * 32, T0 + timedelta(minutes=3), tmp_path)
    store(reloaded, keys, 3, prev, T0 + timedelta(minutes=3), tmp_path)
