"""The node control channel, end to end: a real central's ingest app on 127.0.0.1, the node's
real client, real ffmpeg behind the node's gate.

Also holds the helpers tests/rules/test_cameras.py and tests/rules/test_live.py use (node identities,
a served ingest app, synthetic views).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

import nacl.public
import nacl.signing
import pytest
from aiohttp import web

from appliance import config
from appliance.central.ingest import make_ingest_app
from appliance.node.identity import NodeIdentity
from appliance.node.recorder import Recorder
from appliance.node.spool import Spool
from appliance.node.control import CameraGate, ControlClient, ControlError, LatestGop, gray_image, render_gray
from appliance.central.node_channel import NodeHub
from appliance.node.service import NodeService
from appliance.formats.node_protocol import signed_headers
from appliance.errors import Refused
from hw.backend import Frame
from processes import wait_for

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
SPS = (b"\x00\x00\x00\x01\x67", b"\x00\x00\x01\x67")


# --------------------------------------------------------------------------- helpers (shared)


class ServerThread:
    """A real aiohttp app on 127.0.0.1, port chosen by the kernel, served from its own thread."""

    def __init__(self, make_app):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.runner = web.AppRunner(make_app(), access_log=None)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10), "the server did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def server(central):
    s = ServerThread(lambda: make_ingest_app(central))
    yield s
    s.stop()


def new_node(tmp_path: Path, central, url: str, name: str = "cam-a") -> NodeIdentity:
    return NodeIdentity.init(tmp_path / "nodes" / name, name, bytes(central.keys.archive_public_key()).hex(), url,
                             bytes(central.keys.live_public_key()).hex())


def enrol(people, identity: NodeIdentity, category: str = "entrance", location: str = "Main doors") -> dict:
    return people.call("ivy", "camera.enroll", camera=identity.name, key=identity.public_key_hex,
                       category=category, location=location)["camera"]


def pattern(w: int, h: int, shift: int = 0, brighten: int = 0) -> bytes:
    """A view with structure: blocks of different greys, optionally panned by `shift` pixels."""
    return bytes(min(255, ((x + shift) // 8 * 37 + y // 8 * 91) % 200 + brighten) for y in range(h) for x in range(w))


def send_view(client: ControlClient, pixels: bytes, w: int = 128, h: int = 72, frame=(1280, 720),
              masks=()) -> int:
    image = gray_image(w, h, pixels, frame, datetime.now(timezone.utc), [list(m) for m in masks])
    return client.put_image(f"/v1/nodes/{client.camera}/snapshot", image)


def post_entrance_sign(people) -> None:
    people.call("ivy", "signage.add", location="entrance", posted_on=date.today().isoformat(),
                note="at the main doors")


def approved_camera(tmp_path, central, people, server, name="cam-a", pixels=None) -> ControlClient:
    """An enrolled camera whose placement the Director approved from a view its node sent."""
    identity = new_node(tmp_path, central, server.url, name)
    enrol(people, identity)
    client = ControlClient(identity)
    assert send_view(client, pixels if pixels is not None else pattern(128, 72)) == 200
    if not people.call("director", "signage.list")["entrance_signed"]:
        post_entrance_sign(people)
    people.call("director", "camera.approve_placement", camera=name, note="view checked on the snapshot")
    return client


def audit_actions(central, action: str) -> list[dict]:
    return central.audit.query(action_prefix=action)


def raw_request(url: str, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, {"raw": data}


def node_config(identity: NodeIdentity, **camera) -> config.Config:
    cam = {"backend": "synthetic", "width": 320, "height": 180, "fps": 10, "keyframe_seconds": 1,
           "bitrate_kbps": 300, **camera}
    return config.load(overrides={
        "node": {"name": identity.name, "data_dir": str(identity.data_dir), "central_url": identity.central_url,
                 "segment_seconds": 2, "control_seconds": 0.2, "view_check_seconds": 600,
                 "live_interval_seconds": 0.3, "retry_max_seconds": 1.0},
        "camera": cam})


class RunningNode:
    """A whole camera node in this process: real ffmpeg, gate, recorder, uploader, control thread."""

    def __init__(self, identity: NodeIdentity, **settings):
        node = settings.pop("node", {})
        self.cfg = node_config(identity, **settings)
        for key, value in node.items():
            setattr(self.cfg.node, key, value)
        self.fatal: list[str] = []
        self.service = NodeService(self.cfg, identity.data_dir, on_fatal=lambda: self.fatal.append("fatal"))
        self.service.start()

    def stop(self):
        self.service.stop(drain_seconds=10)
        assert self.fatal == [], "the camera watchdog gave up"

    def polls_pass(self, n: int = 3):
        """Let the control thread ask the central n more times."""
        start = self.service.control.polls
        wait_for(lambda: self.service.control.polls >= start + n, what=f"{n} control polls")


def no_sps_under(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(p in data for p in SPS), f"H.264 in clear in {path}"


# --------------------------------------------------------------------------- signatures and replay


def test_node_requests_need_the_enrolled_key_and_a_valid_signature(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    path = f"/v1/nodes/{identity.name}/control"
    t = time.time_ns() // 1000

    # unknown camera
    stranger = nacl.signing.SigningKey.generate()
    status, body = raw_request(server.url, "GET", "/v1/nodes/cam-x/control",
                               signed_headers(stranger, "cam-x", "GET", "/v1/nodes/cam-x/control", t, b""))
    assert status == 403 and "not enrolled" in body["error"]
    # enrolled camera, signed by another key
    status, body = raw_request(server.url, "GET", path, signed_headers(stranger, identity.name, "GET", path, t, b""))
    assert status == 403 and "signature" in body["error"]
    # no headers at all
    assert raw_request(server.url, "GET", path, {})[0] == 403
    # signed for another path
    status, _ = raw_request(server.url, "GET", path,
                            signed_headers(identity.signing_key, identity.name, "GET", path + "x", t, b""))
    assert status == 403
    # a snapshot body changed after signing
    sealed = nacl.public.SealedBox(central.keys.live_public_key()).encrypt(b"{}")
    snap = f"/v1/nodes/{identity.name}/snapshot"
    headers = signed_headers(identity.signing_key, identity.name, "PUT", snap, t + 1, sealed)
    status, body = raw_request(server.url, "PUT", snap, headers, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    assert status == 403 and "signature" in body["error"]
    # the header names another camera than the path
    headers = signed_headers(identity.signing_key, "cam-b", "GET", path, t + 2, b"")
    assert raw_request(server.url, "GET", path, headers)[0] == 403

    # the real client gets an answer only it can open
    answer = ControlClient(identity).control()
    assert answer["status"] == "pending_placement" and answer["masks"] == [] and answer["live"] is None
    assert answer["snapshot_wanted"] is True


def test_replayed_node_request_is_refused(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    path = f"/v1/nodes/{identity.name}/control"
    t = time.time_ns() // 1000
    headers = signed_headers(identity.signing_key, identity.name, "GET", path, t, b"")
    assert raw_request(server.url, "GET", path, headers)[0] == 200
    status, body = raw_request(server.url, "GET", path, headers)          # the same request again
    assert status == 403 and "replayed" in body["error"] and body["last_time"] == t
    older = signed_headers(identity.signing_key, identity.name, "GET", path, t - 1, b"")
    assert raw_request(server.url, "GET", path, older)[0] == 403

    # A restarted central (its RAM forgotten) still refuses what was accepted before.
    central.nodes = NodeHub(central)   # as after a restart: nothing in RAM
    assert raw_request(server.url, "GET", path, headers)[0] == 403


def test_node_whose_clock_is_behind_catches_up_with_the_central(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    ahead = time.time_ns() // 1000 + 3_600_000_000                          # an hour ahead of this clock
    central.nodes.last_time[identity.name] = ahead
    client = ControlClient(identity)
    assert client.control()["status"] == "pending_placement"                # refused once, then corrected
    assert central.nodes.last_time[identity.name] > ahead


def test_node_refuses_a_control_answer_the_central_did_not_seal(tmp_path, central):
    # Someone on the LAN answering in the central's place could lift the privacy masks.
    async def forged(_request):
        return web.json_response({"status": "approved", "masks": [], "snapshot_wanted": False, "live": None})

    def make_app():
        app = web.Application()
        app.router.add_get("/v1/nodes/{camera}/control", forged)
        return app

    fake = ServerThread(make_app)
    try:
        identity = new_node(tmp_path, central, fake.url)
        with pytest.raises(ControlError, match="not sealed"):
            ControlClient(identity).control()
    finally:
        fake.stop()


def test_images_must_be_sealed_to_the_live_key_and_well_formed(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    client = ControlClient(identity)
    snap = f"/v1/nodes/{identity.name}/snapshot"
    image = gray_image(4, 2, b"\x01" * 8, (1280, 720), datetime.now(timezone.utc), [])
    wrong = nacl.public.SealedBox(nacl.public.PrivateKey.generate().public_key).encrypt(json.dumps(image).encode())
    assert client.send("PUT", snap, wrong)[0] == 400
    short = dict(image, pixels=base64.b64encode(b"\x01" * 7).decode())
    assert client.put_image(snap, short) == 400
    assert central.nodes.snapshots == {}
    assert client.put_image(snap, image) == 200
    assert central.nodes.snapshots[identity.name]["width"] == 4


# --------------------------------------------------------------------------- the gate and the tap


class MemoryRecorder:
    def __init__(self):
        self.segments: list[list[Frame]] = []

    def open_segment(self, picture_size=None):
        frames: list[Frame] = []
        self.segments.append(frames)

        class Sink:
            def write_frame(self, frame):
                frames.append(frame)

            def close(self):
                pass

        return Sink()


def test_C6_gate_writes_no_segment_until_approved_and_starts_at_a_keyframe():
    recorder, tap = MemoryRecorder(), LatestGop()
    gate = CameraGate(recorder, tap)
    sink = gate.open_segment()
    frames = [Frame(b"\x00\x00\x00\x01\x65key%d" % i if i % 5 == 0 else b"p%d" % i, i % 5 == 0, i) for i in range(12)]
    for f in frames[:7]:
        sink.write_frame(f)
    assert recorder.segments == [] and tap.frames == 7
    assert tap.gop()[0] == [frames[5].data, frames[6].data]
    gate.recording = True
    for f in frames[7:]:
        sink.write_frame(f)
    assert recorder.segments == [[frames[10], frames[11]]]   # waited for the keyframe
    gate.recording = False                                   # placement withdrawn
    sink.write_frame(frames[0])
    assert len(recorder.segments) == 1 and sink.real is None and gate.segments_opened == 1


def test_frames_a_backend_dropped_are_a_loss_in_the_nodes_log_while_recording(tmp_path):
    archive_key = nacl.public.PrivateKey.generate()
    identity = NodeIdentity.init(tmp_path / "node", "cam-1", bytes(archive_key.public_key).hex(),
                                 "http://127.0.0.1:9", live_key_hex=bytes(archive_key.public_key).hex())
    spool = Spool(tmp_path / "node" / "spool", 10**9)
    gate = CameraGate(Recorder(identity, config.Config(), spool), LatestGop())
    gate.record_loss("3 frames dropped: not recording anyway")
    assert not spool.losses.exists()                         # placement not approved: nothing was to be kept
    gate.recording = True
    gate.record_loss("12 frames dropped: the segment writer fell behind")
    lines = [json.loads(line) for line in spool.losses.read_text().splitlines()]
    assert [(line["segment"], line["why"]) for line in lines] == [
        ("-", "12 frames dropped: the segment writer fell behind")]


def test_latest_gop_is_bounded():
    tap = LatestGop(max_bytes=100, max_units=3)
    tap.feed(Frame(b"k" * 10, True, 0))
    for i in range(10):
        tap.feed(Frame(b"p" * 40, False, i + 1))
    units, _ = tap.gop()
    assert len(units) <= 3 and sum(map(len, units)) <= 100 and units[0] == b"k" * 10
    tap.feed(Frame(b"K", True, 99))
    assert tap.gop()[0] == [b"K"] and tap.keyframe()[0] == [b"K"]


@needs_ffmpeg
def test_render_gray_decodes_through_a_pipe(tmp_path):
    h264 = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=white:size=160x90:rate=10",
                           "-t", "1", "-c:v", "libx264", "-g", "10", "-x264-params", "repeat-headers=1",
                           "-f", "h264", "-"], capture_output=True, check=True, timeout=60).stdout
    w, h, pixels = render_gray([h264], (160, 90), 64)
    assert (w, h) == (64, 36) and len(pixels) == 64 * 36
    assert min(pixels) > 200                                                 # white stays white
    assert list(tmp_path.iterdir()) == []


def test_C6_node_remembers_the_centrals_word_across_a_reboot(tmp_path, central, people, server):
    from appliance.node.control import ControlState

    identity = new_node(tmp_path, central, server.url)
    cfg = node_config(identity, masks=[[0, 0, 8, 8]])
    fresh = NodeService(cfg, identity.data_dir, on_fatal=lambda: None)
    assert fresh.gate.recording is False                                  # never approved: no segment
    fresh.close()                                                         # one node per directory at a time
    state = ControlState.load(identity.data_dir)
    state.status, state.masks = "approved", [[10, 10, 20, 20]]
    state.save()
    rebooted = NodeService(cfg, identity.data_dir, on_fatal=lambda: None)  # the central is unreachable
    assert rebooted.gate.recording is True                                # C1: an approved camera records
    assert rebooted.state.masks == [[10, 10, 20, 20]]
    rebooted.close()
    (identity.data_dir / "control.json").write_text("{not json")
    assert NodeService(cfg, identity.data_dir, on_fatal=lambda: None).gate.recording is False


# --------------------------------------------------------------------------- a real node


def test_C6_camera_does_not_record_until_placement_approved_from_snapshot(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    node = RunningNode(identity)
    try:
        camera = lambda: people.call("director", "camera.list")["cameras"][0]  # noqa: E731
        wait_for(lambda: camera()["snapshot_available"], what="the node's first snapshot")
        # The camera runs (so it can be seen) for longer than two segments: nothing is recorded.
        wait_for(lambda: node.service.tap.frames >= 30, what="3 s of frames")
        assert node.service.gate.segments_opened == 0
        assert list((identity.data_dir / "spool").glob("*.cseg*")) == []
        assert central.archive.head(identity.name) is None
        assert camera()["status"] == "pending_placement"

        view = people.call("director", "camera.snapshot", camera=identity.name)
        pixels = base64.b64decode(view["pixels"])
        assert (view["width"], view["height"], view["format"]) == (128, 72, "gray8")
        assert max(pixels) - min(pixels) > 100                              # testsrc2's pattern, not blank

        post_entrance_sign(people)
        people.call("director", "camera.approve_placement", camera=identity.name, note="doors and lobby only")
        wait_for(lambda: central.archive.head(identity.name) is not None, what="a first recorded segment")
    finally:
        node.stop()
    entry = audit_actions(central, "camera.approve_placement")[-1]
    assert entry["details"]["snapshot_sha256"] == hashlib.sha256(pixels).hexdigest()
    assert entry["actor"] == people.ids["director"] and entry["why"] == "doors and lobby only"
    no_sps_under(identity.data_dir)


def approved_node(tmp_path, central, people, server) -> tuple[NodeIdentity, RunningNode]:
    """A real node whose placement the Director approved from its first snapshot."""
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    node = RunningNode(identity, node={"view_check_seconds": 1})
    try:
        wait_for(lambda: people.call("director", "camera.list")["cameras"][0]["snapshot_available"],
                 what="a snapshot")
        post_entrance_sign(people)
        people.call("director", "camera.approve_placement", camera=identity.name, note="checked")
    except BaseException:
        node.stop()
        raise
    return identity, node


def test_C6_masks_set_by_the_director_are_drawn_on_the_node_before_encoding(tmp_path, central, people, server):
    from appliance.formats.segment import enrolled_key, iter_frames

    identity, node = approved_node(tmp_path, central, people, server)
    try:
        people.call("director", "camera.set_masks", camera=identity.name, masks=[[0, 0, 160, 180]],
                    why="the left half looks onto the reading tables")
        wait_for(lambda: node.service.runner.masks == [[0, 0, 160, 180]], what="the node to apply the mask")
        segments_before = central.archive.head(identity.name)
        snapshot = wait_for(lambda: (s := central.nodes.snapshots.get(identity.name)) and s["masks"] and s,
                            what="a snapshot with the mask")
        wait_for(lambda: (central.archive.head(identity.name) or -1) >= (segments_before or 0) + 2,
                 what="segments recorded with the mask")
    finally:
        node.stop()
    pixels = base64.b64decode(snapshot["pixels"])
    left = [pixels[y * 128 + x] for y in range(72) for x in range(0, 60)]
    right = [pixels[y * 128 + x] for y in range(72) for x in range(68, 128)]
    assert max(left) < 30 and max(right) > 100
    # The recording itself carries the mask: decode the latest segment.
    people.unseal()
    last = list(central.archive.segments(identity.name))[-1]
    annexb = b"".join(f.data for f in iter_frames(last.path, central.custody.private_key(),
                                                   enrolled_key(identity.signing_key.verify_key)))
    w, h, gray = render_gray([annexb], (320, 180), 64)
    assert max(gray[y * w + x] for y in range(h) for x in range(0, 30)) < 30
    # A mask added after approval is not a moved camera.
    assert not [a for a in central.records.all("alerts") if a["kind"] == "camera_moved"]
    entry = audit_actions(central, "camera.set_masks")[-1]
    assert entry["details"]["masks"] == [[0, 0, 160, 180]] and entry["why"].startswith("the left half")


def test_C8_node_sends_frames_only_while_a_live_view_is_open(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    node = RunningNode(identity)
    control = node.service.control
    try:
        wait_for(lambda: people.call("director", "camera.list")["cameras"][0]["snapshot_available"],
                 what="a snapshot")
        post_entrance_sign(people)
        people.call("director", "camera.approve_placement", camera=identity.name, note="checked")
        node.polls_pass(5)
        assert control.live_sent == 0 and central.nodes.live == {}

        view = people.call("sam", "live.open", camera=identity.name, purpose="watching the lobby")["view"]
        frame = wait_for(lambda: _frame_or_none(people, view["id"]), what="a live frame")
        assert (frame["width"], frame["format"]) == (96, "gray8")
        assert len(base64.b64decode(frame["pixels"])) == frame["width"] * frame["height"]
        assert central.custody.is_sealed                                       # live view works sealed

        people.call("sam", "live.close", view=view["id"])
        node.polls_pass(2)
        sent = control.live_sent
        node.polls_pass(5)
        assert control.live_sent == sent and control.live is None

        # A frame for the closed live view is refused and dropped.
        received = central.nodes.live_frames.get(view["id"], 0)
        image = gray_image(4, 2, b"\x00" * 8, (320, 180), datetime.now(timezone.utc), [])
        assert control.client.put_image(f"/v1/nodes/{identity.name}/live/{view['id']}", image) == 409
        assert central.nodes.live_frames.get(view["id"], 0) == received
    finally:
        node.stop()
    closed = audit_actions(central, "live.close")[-1]
    assert closed["refs"]["live_session"] == view["id"] and closed["details"]["frames_received"] >= 1


def _frame_or_none(people, view_id):
    from appliance.errors import NotFound

    try:
        return people.call("sam", "live.frame", view=view_id)
    except NotFound:
        return None


class RecordingProxy:
    """A TCP relay that keeps every byte the node sends: what a LAN eavesdropper sees."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.sent = bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src, dst, record):
        try:
            while data := src.recv(65536):
                if record:
                    self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def test_C4_live_frames_encrypted_in_transit(tmp_path, central, people, server):
    proxy = RecordingProxy(server.port)
    try:
        identity = new_node(tmp_path, central, f"http://127.0.0.1:{proxy.port}")
        enrol(people, identity)
        client = ControlClient(identity)
        assert send_view(client, pattern(128, 72)) == 200
        post_entrance_sign(people)
        people.call("director", "camera.approve_placement", camera=identity.name, note="checked")
        view = people.call("sam", "live.open", camera=identity.name, purpose="front desk queue")["view"]
        pixels = pattern(96, 54, shift=3)
        image = gray_image(96, 54, pixels, (1280, 720), datetime.now(timezone.utc), [])
        assert client.put_image(f"/v1/nodes/{identity.name}/live/{view['id']}", image) == 200
        shown = people.call("sam", "live.frame", view=view["id"])
        assert base64.b64decode(shown["pixels"]) == pixels
    finally:
        proxy.close()
    wire = bytes(proxy.sent)
    request = wire[wire.index(f"PUT /v1/nodes/{identity.name}/live/".encode()):]
    head, body = request.split(b"\r\n\r\n", 1)
    length = int([line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0]
                 .split(b":")[1])
    body = body[:length]
    assert pixels[:32] not in wire and image["pixels"][:32].encode() not in wire and b'"pixels"' not in wire
    assert nacl.public.SealedBox(central.keys.live_key()).decrypt(body) == json.dumps(
        image, separators=(",", ":")).encode()
    assert len(body) == len(json.dumps(image, separators=(",", ":"))) + 48   # ephemeral key + MAC


def test_segments_from_a_camera_never_approved_are_refused(tmp_path, central, people, server):
    from appliance.formats.segment import SegmentWriter, StreamParams

    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    path = tmp_path / "0000000000.cseg"
    writer = SegmentWriter(path, params=StreamParams(camera=identity.name, width=320, height=180, fps_num=10),
                           seq=0, prev_digest=None, archive_key=central.keys.archive_public_key(),
                           signing_key=identity.signing_key)
    writer.write_frame(Frame(b"\x00\x00\x00\x01\x65" + b"x" * 100, True, 0))
    writer.close()
    body = path.read_bytes()
    status, answer = raw_request(server.url, "PUT", f"/v1/segments/{identity.name}/0",
                                 {"Content-Length": str(len(body))}, body)
    assert status == 403 and "C6" in answer["error"]
    assert central.archive.head(identity.name) is None
    with pytest.raises(Refused):
        people.call("director", "camera.approve_placement", camera=identity.name, note="no snapshot yet")


@needs_ffmpeg
def test_new_masks_restart_the_camera_and_the_gap_says_so(tmp_path, central, people, server):
    identity, node = approved_node(tmp_path, central, people, server)
    try:
        wait_for(lambda: central.archive.head(identity.name) is not None, what="a first recorded segment")
        people.call("director", "camera.set_masks", camera=identity.name, masks=[[0, 0, 160, 180]],
                    why="the left half looks onto the reading tables")
        head = central.archive.head(identity.name)
        wait_for(lambda: central.archive.head(identity.name) >= head + 2, what="segments recorded with the mask")
    finally:
        node.stop()
    gaps = [json.loads(line) for line in (identity.data_dir / "gaps.jsonl").read_text().splitlines()]
    assert [g["why"] for g in gaps] == ["camera restarted: privacy masks changed"]
    recorded = central.records.all("gaps")
    assert [(g["kind"], g["to_seq"], g["why"]) for g in recorded] == [
        ("time", gaps[0]["seq"], "camera restarted: privacy masks changed")]
