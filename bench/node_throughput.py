"""Benchmark 1: node pipeline throughput against its floor.

Measured: one segment's worth of real access units (the 1080p30 5 Mb/s clip, looped
to the node's segment length) written through `SegmentWriter` with the node's
defaults (chunk size, chunk seconds, fsync interval): encrypted, hashed, signed,
fsync'd and renamed into place. Time runs from opening the segment to `close()`
returning.

Floor: the least any implementation of the format must do with the same bytes:
libsodium secretstream over the payload in chunks of the writer's chunk size
(pre-sliced, so no copying is timed), one SHA-256 pass over the ciphertext, written
to a file with one fsync at the end.

The two sides alternate (which goes first alternates too); dirty pages are written
back before every trial; the ratio is median(writer) / median(floor).
"""
from __future__ import annotations

import hashlib
import os
import time

from . import common

NAME = "node_throughput"
TITLE = "Node pipeline throughput (SegmentWriter vs secretstream+SHA-256+fsync floor)"
TARGET = 0.8


def _writer_trial(path, frames, keys, cfg) -> float:
    from appliance.formats.segment import SegmentWriter, StreamParams

    archive_pub, signing_key = keys
    t0 = time.perf_counter()
    writer = SegmentWriter(path, params=StreamParams("bench-cam", common.WIDTH, common.HEIGHT, common.FPS),
                           seq=0, prev_digest=None, archive_key=archive_pub, signing_key=signing_key,
                           chunk_bytes=cfg.chunk_bytes, chunk_seconds=cfg.chunk_seconds,
                           fsync_seconds=cfg.fsync_seconds)
    for frame in frames:
        writer.write_frame(frame)
    writer.close()
    return time.perf_counter() - t0


def _floor_trial(path, chunks) -> float:
    import nacl.bindings as sodium

    push = sodium.crypto_secretstream_xchacha20poly1305_push
    tag_message = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
    tag_final = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    last = len(chunks) - 1
    t0 = time.perf_counter()
    key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    digest = hashlib.sha256(header)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, header)
        for i, chunk in enumerate(chunks):
            ciphertext = push(state, chunk, None, tag_final if i == last else tag_message)
            digest.update(ciphertext)
            os.write(fd, ciphertext)
        os.fsync(fd)
    finally:
        os.close(fd)
    digest.digest()
    return time.perf_counter() - t0


def run(settings: common.Settings) -> dict:
    import nacl.public
    import nacl.signing

    cfg = common.node_defaults()
    segment_seconds = 4 if settings.quick else cfg.segment_seconds
    reps = 2 if settings.quick else 11
    units = common.clip_units(settings)
    frames = common.frames_for(units, segment_seconds)
    payload = b"".join(f.data for f in frames)
    chunks = [payload[i:i + cfg.chunk_bytes] for i in range(0, len(payload), cfg.chunk_bytes)]
    keys = (nacl.public.PrivateKey.generate().public_key, nacl.signing.SigningKey.generate())

    writer_times: list[float] = []
    floor_times: list[float] = []
    writer_cpu: list[float] = []
    floor_cpu: list[float] = []
    with common.scratch(settings, NAME) as tmp:
        def one(kind: str, n: int, record: bool) -> None:
            path = tmp / f"{kind}-{n}.cseg"
            common.settle()
            u0, s0 = common.rusage_self()
            if kind == "writer":
                t = _writer_trial(path, frames, keys, cfg)
            else:
                t = _floor_trial(path, chunks)
            u1, s1 = common.rusage_self()
            path.unlink()
            if record:
                (writer_times if kind == "writer" else floor_times).append(t)
                (writer_cpu if kind == "writer" else floor_cpu).append((u1 - u0) + (s1 - s0))

        one("writer", -1, False)        # warm-up: imports, page cache, allocator
        one("floor", -1, False)
        for n in range(reps):
            order = ("writer", "floor") if n % 2 == 0 else ("floor", "writer")
            for kind in order:
                one(kind, n, True)

    size = len(payload)
    writer_mbs = size / common.median(writer_times) / common.MB
    floor_mbs = size / common.median(floor_times) / common.MB
    ratio = writer_mbs / floor_mbs
    paired = sorted(f / w for w, f in zip(writer_times, floor_times))
    return common.result(
        NAME, TITLE, figure=writer_mbs, unit="MB/s", baseline=floor_mbs, baseline_unit="MB/s",
        baseline_name="secretstream + SHA-256 + one fsync", ratio=ratio,
        checks=[common.check("writer / floor throughput", ratio, ">=", TARGET)],
        details={
            "segment_seconds_of_video": segment_seconds,
            "payload_bytes": size,
            "frames": len(frames),
            "chunk_bytes": cfg.chunk_bytes,
            "chunks_floor": len(chunks),
            "reps": reps,
            "writer_seconds": writer_times,
            "floor_seconds": floor_times,
            "paired_ratio_median": common.median(paired),
            # CPU seconds (user+sys) per trial: far less noisy than wall time, which the
            # fsync of ~40 MB dominates on this disk.
            "writer_cpu_seconds": writer_cpu,
            "floor_cpu_seconds": floor_cpu,
            "cpu_ratio_floor_over_writer": common.median(floor_cpu) / common.median(writer_cpu),
            "writer_x_realtime": writer_mbs * common.MB / common.NOMINAL_BYTES_PER_SECOND,
        },
    )
