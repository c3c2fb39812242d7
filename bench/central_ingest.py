"""Benchmark 4: central ingest of 16 cameras uploading at once, against its floor.

Measured: a real Central (appliance.central.daemon, initialised with init_central, 16 node
keys enrolled as approved cameras) serving ingest (appliance.central.ingest via
Central.serve) on 127.0.0.1 from a thread of this process. 16 client processes, one
per camera (each camera is its own node: no GIL shared between them), each PUT
their N pre-made segments in sequence order exactly as appliance/node/recorder.py
Uploader._send does (a new http.client connection per segment, the spooled file as
the body, Content-Length). Every segment is a real one: the 1080p30 5 Mb/s clip
looped to the node's segment length, written by SegmentWriter, signed by that
camera's own key and chained to its predecessor. Time runs from the first client's
start to the last acknowledgement (CLOCK_MONOTONIC, shared by the processes);
every answer must be 201 "stored" and every segment must be in the archive tree.
A fresh central is made for each repetition.

Floor: the same segments, the same concurrency (16 threads in this process), no
HTTP: each thread reads its files in 1 MiB blocks, feeds SegmentVerifier (with the
camera's key) and writes the bytes to a new file, fsyncs and closes it.
Diagnostic (not in the ratio): the same without SegmentVerifier ("disk only"), to
show whether the floor itself is bound by the disk.

The sides alternate; dirty pages are written back between trials; medians are compared.
Targets: ratio >= 0.7, and throughput >= 20x the real-time load of 16 cameras at
5 Mb/s (16 x 5 Mb/s = 10 MB/s, so 200 MB/s).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import common

NAME = "central_ingest"
TITLE = "Central ingest, 16 cameras at once over HTTP (vs verify+write+fsync floor, no HTTP)"
TARGET_RATIO = 0.7
TARGET_MULTIPLE = 20.0
CAMERAS = 16
DIRECTOR = ("director", "director-passphrase-1")
READ_BLOCK = 1024 * 1024


# --------------------------------------------------------------------------- the client process


def _client_main() -> int:
    """`python -m bench.central_ingest --client`: one camera's uploads.

    Reads its job (one JSON line) on stdin, prints 'ready', waits for a 'go' line,
    uploads, prints one JSON line: start/end on CLOCK_MONOTONIC (shared by all
    processes), its own CPU time, and each answer.
    """
    import http.client
    import resource

    job = json.loads(sys.stdin.readline())
    host, port, camera = job["host"], job["port"], job["camera"]
    results: list[dict] = []
    print("ready", flush=True)
    sys.stdin.readline()                       # "go"
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    for seq, path in job["files"]:
        size = os.stat(path).st_size
        # As appliance/node/recorder.py Uploader._send: one connection per segment, the spooled file as the body.
        conn = http.client.HTTPConnection(host, port, timeout=120)
        try:
            with open(path, "rb") as body:
                conn.request("PUT", f"/v1/segments/{camera}/{seq}", body=body,
                             headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
                response = conn.getresponse()
                payload = response.read(1024 * 1024)
        finally:
            conn.close()
        results.append({"camera": camera, "seq": seq, "status": response.status, "bytes": size,
                        "answer": payload[:200].decode(errors="replace")})
    end = time.monotonic()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"start": start, "end": end, "user": r1.ru_utime - r0.ru_utime,
                      "sys": r1.ru_stime - r0.ru_stime, "results": results}), flush=True)
    return 0


# --------------------------------------------------------------------------- the server side


class _Serving:
    """A real Central serving ingest on 127.0.0.1 (port 0) from its own thread (cf. tests/conftest.py)."""

    def __init__(self, data_dir: Path, node_keys: dict):
        from appliance import config
        from appliance.central.daemon import Central, init_central

        init_central(data_dir, *DIRECTOR)
        # The local API's Unix socket needs a short path (108 bytes); the scratch dir may be deep.
        self._sock_dir = tempfile.mkdtemp(prefix="custodian-bench-")
        cfg = config.load(overrides={"central": {"data_dir": str(data_dir), "ingest_port": 0,
                                                 "ingest_host": "127.0.0.1",
                                                 "api_socket": os.path.join(self._sock_dir, "api.sock")}})
        self.central = Central(cfg, data_dir)
        for name, key in node_keys.items():
            self.central.records.insert("cameras", {
                "key": key.verify_key.encode().hex(), "category": "entrance", "location": "bench",
                "status": "approved", "masks": [], "snapshot_at": None}, id=name)
        self.central.reload_cameras()
        try:
            self._start()
        except BaseException:
            self.central.close()
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            raise
        self.port = self.central.ingest_port

    def _start(self) -> None:
        import asyncio

        self._loop = asyncio.new_event_loop()
        self._task = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-central", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError(f"the central did not start: {self._error!r}")
        if self._error is not None:
            raise RuntimeError(f"the central did not start: {self._error!r}")

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            ready = asyncio.Event()
            self._task = asyncio.create_task(self.central.serve(ready))
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if self._task.done() and not ready.is_set():
                self._error = self._task.exception()
            self._ready.set()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

        try:
            self._loop.run_until_complete(main())
        except BaseException as e:  # noqa: BLE001 - reported to the caller through _error
            self._error = e
            self._ready.set()
        finally:
            self._loop.close()

    def stop(self) -> None:
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(60)
        self.central.close()
        shutil.rmtree(self._sock_dir, ignore_errors=True)


def _http_trial(tmp: Path, n: int, premade: dict, node_keys: dict) -> dict:
    data_dir = tmp / f"central-{n}"
    serving = _Serving(data_dir, node_keys)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(common.ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    clients: list[subprocess.Popen] = []
    outs: list[dict] = []
    try:
        # One process per camera, as each camera is its own node (no shared GIL between them).
        for camera, files in premade.items():
            client = subprocess.Popen([sys.executable, "-m", "bench.central_ingest", "--client"], cwd=common.ROOT,
                                      env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            clients.append(client)
            client.stdin.write(json.dumps({"host": "127.0.0.1", "port": serving.port, "camera": camera,
                                           "files": [[seq, str(p)] for seq, p in files]}) + "\n")
            client.stdin.flush()
        for client in clients:
            if client.stdout.readline().strip() != "ready":
                raise RuntimeError(f"ingest client failed: {client.stderr.read()[-2000:]}")
        common.settle()
        u0, s0 = common.rusage_self()
        for client in clients:
            client.stdin.write("go\n")
            client.stdin.flush()
        for client in clients:
            line = client.stdout.readline()
            if not line:
                raise RuntimeError(f"ingest client failed: {client.stderr.read()[-2000:]}")
            outs.append(json.loads(line))
        u1, s1 = common.rusage_self()
        for client in clients:
            client.wait(60)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
        serving.stop()
    results = [r for out in outs for r in out["results"]]
    bad = [r for r in results if r["status"] != 201]
    if bad:
        raise RuntimeError(f"{len(bad)} uploads were not stored: {bad[:3]}")
    stored = list((data_dir / "archive").rglob("*.cseg"))
    expected = sum(len(files) for files in premade.values())
    if len(stored) != expected or len(results) != expected:
        raise RuntimeError(f"{len(stored)} segments in the archive, {len(results)} answers, {expected} uploaded")
    shutil.rmtree(data_dir)
    return {"wall": max(o["end"] for o in outs) - min(o["start"] for o in outs),
            "bytes": sum(r["bytes"] for r in results),
            "server_user": u1 - u0, "server_sys": s1 - s0,
            "client_user": sum(o["user"] for o in outs), "client_sys": sum(o["sys"] for o in outs)}


def _floor_trial(tmp: Path, n: int, premade: dict, node_keys: dict, verify: bool = True) -> dict:
    """The floor; with verify=False, a diagnostic: the same reads, writes and fsyncs, no verifying."""
    from appliance.formats.segment import SegmentVerifier

    out_dir = tmp / f"{'floor' if verify else 'disk'}-{n}"
    out_dir.mkdir()
    errors: list[BaseException] = []
    total = [0]
    lock = threading.Lock()
    start = threading.Barrier(len(premade) + 1)

    def lookup_for(key):
        return lambda camera, header: key.verify_key

    def store(camera: str, files: list) -> None:
        start.wait()
        try:
            for seq, path in files:
                verifier = SegmentVerifier(lookup_for(node_keys[camera]))
                with open(path, "rb") as src, open(out_dir / f"{camera}-{seq}.cseg", "wb") as dst:
                    while block := src.read(READ_BLOCK):
                        if verify:
                            verifier.feed(block)
                        dst.write(block)
                    dst.flush()
                    os.fsync(dst.fileno())
                    size = dst.tell()
                if verify:
                    size = verifier.finish().size
                with lock:
                    total[0] += size
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=store, args=(cam, files)) for cam, files in premade.items()]
    for t in threads:
        t.start()
    common.settle()
    u0, s0 = common.rusage_self()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    u1, s1 = common.rusage_self()
    if errors:
        raise errors[0]
    shutil.rmtree(out_dir)
    return {"wall": wall, "bytes": total[0], "user": u1 - u0, "sys": s1 - s0}


def _premake(tmp: Path, settings: common.Settings, segments_per_camera: int, segment_seconds: int):
    """Each camera's key and its N chained segments (SegmentWriter, the node's chunk settings)."""
    from concurrent.futures import ThreadPoolExecutor

    import nacl.public
    import nacl.signing

    from appliance.formats.segment import SegmentWriter, StreamParams

    cfg = common.node_defaults()
    units = common.clip_units(settings)
    archive_key = nacl.public.PrivateKey.generate().public_key
    names = [f"bench-cam-{i:02d}" for i in range(CAMERAS)]
    node_keys = {name: nacl.signing.SigningKey.generate() for name in names}
    start_us = time.time_ns() // 1000

    def make(name: str) -> list:
        directory = tmp / "premade" / name
        files, prev = [], None
        for seq in range(segments_per_camera):
            path = directory / f"{seq:010d}.cseg"
            writer = SegmentWriter(path, params=StreamParams(name, common.WIDTH, common.HEIGHT, common.FPS),
                                   seq=seq, prev_digest=prev, archive_key=archive_key, signing_key=node_keys[name],
                                   chunk_bytes=cfg.chunk_bytes, chunk_seconds=cfg.chunk_seconds,
                                   fsync_seconds=cfg.fsync_seconds,
                                   start_us=start_us + seq * segment_seconds * 1_000_000)
            for frame in common.frames_for(units, segment_seconds, start_pts=seq * segment_seconds * 1_000_000):
                writer.write_frame(frame)
            prev = writer.close().digest
            files.append((seq, path))
        return files

    with ThreadPoolExecutor(max_workers=2) as pool:
        premade = dict(zip(names, pool.map(make, names)))
    return premade, node_keys


def run(settings: common.Settings) -> dict:
    cfg = common.node_defaults()
    segment_seconds = 2 if settings.quick else cfg.segment_seconds
    per_camera = 1 if settings.quick else 2
    reps = 1 if settings.quick else 5
    http: list[dict] = []
    floor: list[dict] = []
    disk: list[dict] = []
    with common.scratch(settings, NAME) as tmp:
        premade, node_keys = _premake(tmp, settings, per_camera, segment_seconds)
        segment_bytes = [p.stat().st_size for files in premade.values() for _, p in files]
        for n in range(reps):
            order = ("http", "floor", "disk") if n % 2 == 0 else ("disk", "floor", "http")
            for kind in order:
                if kind == "http":
                    http.append(_http_trial(tmp, n, premade, node_keys))
                elif kind == "floor":
                    floor.append(_floor_trial(tmp, n, premade, node_keys))
                else:
                    disk.append(_floor_trial(tmp, n, premade, node_keys, verify=False))
        common.settle()

    total = sum(segment_bytes)
    http_mbs = total / common.median([t["wall"] for t in http]) / common.MB
    floor_mbs = total / common.median([t["wall"] for t in floor]) / common.MB
    ratio = http_mbs / floor_mbs
    load = CAMERAS * common.NOMINAL_BYTES_PER_SECOND / common.MB          # 10 MB/s
    actual_load = CAMERAS * (total / len(segment_bytes)) / segment_seconds / common.MB
    multiple = http_mbs / load
    server_cpu = common.median([(t["server_user"] + t["server_sys"]) / t["bytes"] * 1e9 for t in http])
    floor_cpu = common.median([(t["user"] + t["sys"]) / t["bytes"] * 1e9 for t in floor])
    return common.result(
        NAME, TITLE, figure=http_mbs, unit="MB/s", baseline=floor_mbs, baseline_unit="MB/s",
        baseline_name="SegmentVerifier + write + fsync, 16 threads, no HTTP", ratio=ratio,
        checks=[common.check("HTTP / floor throughput", ratio, ">=", TARGET_RATIO),
                common.check("x real-time load of 16 cameras at 5 Mb/s", multiple, ">=", TARGET_MULTIPLE)],
        details={
            "cameras": CAMERAS,
            "segments_per_camera": per_camera,
            "segment_seconds": segment_seconds,
            "segment_bytes_mean": total / len(segment_bytes),
            "total_bytes_per_trial": total,
            "reps": reps,
            "realtime_load_mb_s_nominal": load,
            "realtime_load_mb_s_actual_stream": actual_load,
            "x_realtime_actual_stream": http_mbs / actual_load,
            "http_trials": http,
            "floor_trials": floor,
            # Diagnostic: the floor's reads, writes and fsyncs without verifying (is the disk the limit?)
            "disk_only_mb_s": total / common.median([t["wall"] for t in disk]) / common.MB,
            "disk_only_trials": disk,
            # CPU seconds per GB stored (less sensitive to other load than wall time).
            # The server's figure is this whole process (event loop + worker threads); the
            # client's (the 16 "nodes") is reported apart and is not part of the ratio.
            "server_cpu_s_per_gb": server_cpu,
            "client_cpu_s_per_gb": common.median([(t["client_user"] + t["client_sys"]) / t["bytes"] * 1e9
                                                  for t in http]),
            "floor_cpu_s_per_gb": floor_cpu,
            "cpu_ratio_floor_over_server": floor_cpu / server_cpu,
        },
    )


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--client":
        sys.exit(_client_main())
    sys.exit("run through bench.run: python -m bench.run --only central_ingest")
