"""hw.rtsp_source and hw.sps without a camera: settings, credentials, the ffmpeg command, the
parameter sets, the camera's timestamps, the SPS parser against ffprobe, the NUT reader against
ffprobe. The RTSP server end to end is tests/e2e/test_rtsp.py."""
from __future__ import annotations

import hashlib
import os
import random
import subprocess
import threading
import urllib.parse

import pytest

from hw.annexb import (
    NAL_AUD,
    NAL_IDR,
    NAL_PPS,
    NAL_SLICE,
    NAL_SPS,
    AccessUnit,
    nal_types,
    nal_units,
    picture_head,
    split_access_units,
)
from hw.settings import CameraSettings, SettingsError
from hw.board import Board
from hw.factory import make_backend, rtsp_settings
from hw.ffmpeg_common import NutDemuxer, NutError, drain_lines
from hw.rtsp_source import (
    CameraClock,
    ParameterSets,
    RtspSettingError,
    RtspSettings,
    build_command,
    concat_script,
    diagnose,
    read_credentials,
    reconnect_delay,
    redactor,
    refusal_for_codec,
)
from hw.sps import access_unit_format

URL = "rtsp://192.0.2.10:554/Streaming/Channels/101"
PASSWORD = "p:a ss'w\\rd@/%#"


def creds_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "camera.credentials"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def encode(seconds: float, size: str, *x264: str, pix_fmt: str = "yuv420p") -> bytes:
    """A real H.264 stream from ffmpeg's libx264 (testsrc2, 10 fps, a keyframe every 5 pictures)."""
    argv = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=10", "-t", str(seconds),
            "-pix_fmt", pix_fmt, "-c:v", "libx264", "-g", "5", "-keyint_min", "5", "-sc_threshold", "0",
            *x264, "-f", "h264", "pipe:1"]
    return subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("url, complaint", [
    ("", "url is empty"),
    ("http://192.0.2.10/stream", "expected rtsp://host"),
    ("rtsp:///stream", "expected rtsp://host"),
    ("rtsp://admin:secret@192.0.2.10/stream", "credentials_file, not in the url"),
    ("rtsp://192.0.2.10/str'eam", "quotes"),
    ("rtsp://192.0.2.10/stream\noption x y", "control characters"),
    ("rtsp://192.0.2.10:99999/stream", "port"),
])
def test_camera_url_refused_with_the_reason(url, complaint):
    with pytest.raises(RtspSettingError, match=complaint):
        RtspSettings(url=url)


def test_settings_refuse_unknown_transport_and_encoder():
    with pytest.raises(RtspSettingError, match="rtsp_transport"):
        RtspSettings(url=URL, transport="http")
    with pytest.raises(RtspSettingError, match="encoder"):
        RtspSettings(url=URL, encoder="h264_nvenc")
    assert RtspSettings(url="rtsps://camera.local/live", transport="udp").transport == "udp"


# --------------------------------------------------------------------------- credentials


def test_credentials_read_from_a_private_file(tmp_path):
    assert read_credentials(creds_file(tmp_path, f"admin:{PASSWORD}\n")) == ("admin", PASSWORD)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_credentials_file_others_may_read_is_refused(tmp_path, mode):
    path = creds_file(tmp_path, "admin:secret\n", mode)
    with pytest.raises(RtspSettingError, match=rf"may be read by others \(mode 0{mode:o}\): refusing it; "
                                               rf"run chmod 600 {path}"):
        read_credentials(path)
    # and the node refuses to start with it, saying so
    cfg = CameraSettings(backend="rtsp", url=URL, credentials_file=path)
    with pytest.raises(SettingsError, match=r"\[camera\] credentials_file .* may be read by others"):
        make_backend(cfg, "lobby")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_credentials_file_of_another_user_is_refused(tmp_path):
    path = creds_file(tmp_path, "admin:secret\n")
    os.chown(path, 65534, 65534)
    with pytest.raises(RtspSettingError, match="belongs to uid 65534, not to the node's user"):
        read_credentials(path)


@pytest.mark.parametrize("text", ["", "admin\n", "admin:\n", ":secret\n", "admin:secret\nother:line\n"])
def test_malformed_credentials_refused(tmp_path, text):
    with pytest.raises(RtspSettingError, match="expected one line 'user:password'"):
        read_credentials(creds_file(tmp_path, text))


def test_missing_credentials_file_and_symlink_refused(tmp_path):
    with pytest.raises(RtspSettingError, match="cannot open it"):
        read_credentials(str(tmp_path / "nothing"))
    target = creds_file(tmp_path, "admin:secret\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(RtspSettingError, match="cannot open it"):
        read_credentials(str(link))


def test_concat_script_carries_the_credentials_safely():
    settings = RtspSettings(url=URL, transport="udp", timeout_seconds=4)
    script = concat_script(URL, ("ad min", PASSWORD), settings).decode()
    lines = script.splitlines()
    assert lines[0] == "ffconcat version 1.0"
    assert lines[1].startswith("file 'rtsp://") and lines[1].endswith("/Streaming/Channels/101'")
    # one quoted URL: nothing in the password can close the quote or start another directive
    quoted = lines[1][len("file '"):-1]
    assert "'" not in quoted and "\n" not in quoted
    userinfo = urllib.parse.urlsplit(quoted).netloc.rsplit("@", 1)[0]
    assert [urllib.parse.unquote(v) for v in userinfo.split(":")] == ["ad min", PASSWORD]
    assert lines[2:] == ["option rtsp_transport udp", "option timeout 4000000", "option allowed_media_types video",
                         "option probesize 32", "option analyzeduration 0"]


def test_redactor_removes_the_password_however_spelled():
    redact = redactor(("admin", PASSWORD))
    quoted = urllib.parse.quote(PASSWORD, safe="")
    for line in (f"[concat @ 0x1] Impossible to open 'rtsp://admin:{quoted}@192.0.2.10:554/x'",
                 f"password {PASSWORD} echoed", f"rtsp://other:{quoted}@host/x", f"half {quoted}"):
        out = redact(line)
        assert PASSWORD not in out and quoted not in out and "***" in out
    assert redact("rtsp://admin:x@host/y") == "rtsp://admin:***@host/y"


# --------------------------------------------------------------------------- the ffmpeg command


def pairs(argv: list[str]) -> set[tuple[str, str]]:
    return set(zip(argv, argv[1:]))


def test_without_masks_the_stream_is_copied_and_argv_holds_no_url():
    argv = build_command(RtspSettings(url=URL))
    assert ("-c:v", "copy") in pairs(argv)
    assert ("-f", "concat") in pairs(argv) and ("-i", "pipe:0") in pairs(argv)
    output = argv[argv.index("pipe:0") + 1:]
    assert ("-f", "nut") in pairs(output) and "pipe:1" in output        # framed, with the camera's times
    assert not any("rtsp://" in a or "192.0.2.10" in a for a in argv)
    assert not any("libx264" in a or "drawbox" in a for a in argv)


def test_with_masks_decoded_masked_and_encoded_at_the_configured_size():
    argv = build_command(RtspSettings(url=URL, width=640, height=360, fps=12, keyframe_seconds=2,
                                      masks=((10, 20, 30, 40),)))
    graph = argv[argv.index("-filter_complex") + 1]
    assert "scale=640:360" in graph and "drawbox=10:20:30:40:black:t=fill" in graph
    assert graph.index("scale") < graph.index("format=yuv420p") < graph.index("drawbox")
    assert ("-vcodec", "libx264") in pairs(argv) and ("-g", "24") in pairs(argv)
    assert "copy" not in argv


def test_masks_use_the_pi_encoder_where_the_board_has_one():
    cfg = CameraSettings(backend="rtsp", url=URL, width=1280, height=720, masks=[[0, 0, 100, 100]])
    pi4 = Board("Raspberry Pi 4 Model B Rev 1.5", "pi4", ("raspberrypi,4-model-b", "brcm,bcm2711"))
    pi5 = Board("Raspberry Pi 5 Model B Rev 1.0", "pi5", ("raspberrypi,5-model-b", "brcm,bcm2712"))
    assert rtsp_settings(cfg, board=pi4).encoder == "h264_v4l2m2m"      # this ffmpeg has the encoder
    assert rtsp_settings(cfg, board=pi5).encoder == "libx264"           # no hardware encoder on a Pi 5
    argv = build_command(rtsp_settings(cfg, board=pi4))
    assert ("-vcodec", "h264_v4l2m2m") in pairs(argv) and "-preset" not in argv
    cfg.masks = []
    assert rtsp_settings(cfg, board=pi4).copy                           # no masks: no encoder at all


def test_masks_outside_the_picture_refused():
    cfg = CameraSettings(backend="rtsp", url=URL, width=640, height=360, masks=[[700, 10, 20, 20]])
    with pytest.raises(SettingsError, match="outside the 640x360 frame"):
        make_backend(cfg, "lobby")


# --------------------------------------------------------------------------- words for people


def test_diagnoses_name_the_fix():
    settings = RtspSettings(url="rtsp://192.0.2.10/live", credentials_file="/etc/custodian/lobby.credentials")
    assert diagnose(["[rtsp @ 0x1] method DESCRIBE failed: 401 Unauthorized"], settings) == (
        "the camera refused the user name or password (401 Unauthorized): check /etc/custodian/lobby.credentials")
    assert diagnose(["pipe:0: Connection refused"], settings) == (
        "nothing answers at 192.0.2.10:554 (connection refused): is the camera on, and is the port in the url right?")
    assert "404 Not Found" in diagnose(["method DESCRIBE failed: 404 Not Found"], settings)
    assert diagnose(["something else"], settings) is None
    assert refusal_for_codec("h264") is None
    refusal = refusal_for_codec("hevc")
    assert "H.265 (HEVC)" in refusal and "Video Encoding" in refusal and "to H.264" in refusal


def test_reconnect_backs_off_exponentially_to_the_maximum():
    assert [reconnect_delay(n, 1.0, 30.0) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert reconnect_delay(10_000, 0.5, 2.0) == 2.0


# --------------------------------------------------------------------------- parameter sets


def test_keyframes_without_parameter_sets_get_the_latest_and_decode_alone():
    # As from an encoder (or a camera) that sends SPS/PPS once, at the start
    units = split_access_units(encode(2, "160x120", "-x264-params", "repeat-headers=1:aud=1"))
    keys = [i for i, u in enumerate(units) if u.keyframe]
    for i in keys[1:]:
        units[i] = AccessUnit(b"".join(b"\x00\x00\x00\x01" + nal for t, nal in nal_units(units[i].data)
                                       if t not in (NAL_SPS, NAL_PPS)), True)
    assert len(keys) >= 3 and NAL_SPS not in nal_types(units[keys[1]].data)
    params = ParameterSets()
    repaired = [params.keyframe(u.data)[0] if u.keyframe else u.data for u in units]
    for start, end in zip(keys[1:], keys[2:] + [len(units)]):
        types = nal_types(repaired[start])
        assert types[0] == NAL_AUD and types[1:3] == [NAL_SPS, NAL_PPS]   # after the delimiter
        gop = b"".join(repaired[start:end])
        done = subprocess.run(["ffmpeg", "-v", "error", "-f", "h264", "-i", "pipe:0", "-f", "null", "-"],
                              input=gop, capture_output=True, timeout=60)
        assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert ParameterSets().keyframe(units[keys[1]].data) is None   # nothing known yet: not decodable


@pytest.mark.parametrize("form", ["annexb", "avcc"])
def test_parameter_sets_from_the_streams_global_header(form):
    """An encoder that puts SPS and PPS only in ffmpeg's extradata (a global header, as NUT asks
    for): the first keyframe gets them from there, in either form extradata takes."""
    units = split_access_units(encode(1, "160x120", "-x264-params", "repeat-headers=1:aud=1"))
    nals = nal_units(units[0].data)
    sps, pps = (next(nal for t, nal in nals if t == kind) for kind in (NAL_SPS, NAL_PPS))
    bare_keyframe = b"".join(b"\x00\x00\x00\x01" + nal for t, nal in nals if t not in (NAL_SPS, NAL_PPS))
    if form == "annexb":
        extradata = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps
    else:   # ISO/IEC 14496-15: version, profile, compatibility, level, length size, then counted, sized lists
        extradata = (bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
                     + bytes([1]) + len(pps).to_bytes(2, "big") + pps)
    params = ParameterSets()
    params.seed(extradata)
    repaired, picture = params.keyframe(bare_keyframe)
    assert nal_types(repaired)[:3] == [NAL_AUD, NAL_SPS, NAL_PPS] and (picture.width, picture.height) == (160, 120)
    done = subprocess.run(["ffmpeg", "-v", "error", "-f", "h264", "-i", "pipe:0", "-f", "null", "-"],
                          input=repaired + b"".join(u.data for u in units[1:5]), capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    params.seed(b"\x00\x00\x00\x01\x67\xff")                       # an SPS that cannot be read: ignored
    assert params.sps == sps


@pytest.mark.parametrize("size, x264, pix_fmt", [
    ("320x240", (), "yuv420p"),
    ("1920x1080", (), "yuv420p"),                        # 1088 coded, cropped to 1080
    ("642x362", (), "yuv422p"),                          # cropped in 4:2:2
    ("352x288", (), "yuv444p"),                          # High 4:4:4 Predictive
    ("1280x720", ("-x264-params", "cqm=jvt"), "yuv420p"),  # scaling matrices in the SPS
    ("720x576", ("-x264-params", "interlaced=1"), "yuv420p"),  # field coding
])
def test_sps_picture_size_matches_ffprobe(size, x264, pix_fmt):
    data = encode(0.2, size, *x264, pix_fmt=pix_fmt)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0",
                            "-f", "h264", "pipe:0"], input=data, capture_output=True, timeout=60, check=True)
    width, height = map(int, probe.stdout.decode().split(","))
    picture = access_unit_format(split_access_units(data)[0].data)
    assert (picture.width, picture.height) == (width, height) == tuple(map(int, size.split("x")))


def test_ffmpeg_lines_are_handed_on_whole_or_not_at_all():
    """A line too long to keep is replaced, never cut (a cut could split a password the redactor
    would then miss); the pipe is drained to its end."""
    read, write = os.pipe()
    long_line = b"Impossible to open 'rtsp://admin:" + b"x" * 10_000 + b"@host/'\n"
    os.write(write, b"first line\n" + long_line[:3000])
    received: list[str] = []
    reader = threading.Thread(target=drain_lines, args=(read, received.append))
    reader.start()
    os.write(write, long_line[3000:] + b"  last line, no newline  ")
    os.close(write)
    reader.join(10)
    os.close(read)
    assert received == ["first line", "(a line too long to keep)", "last line, no newline"]


# --------------------------------------------------------------------------- ffmpeg's NUT output


def nut_of(tmp_path, name: str, *args: str) -> bytes:
    path = tmp_path / f"{name}.nut"
    subprocess.run(["ffmpeg", "-v", "error", *args, "-f", "nut", str(path)], check=True, timeout=120)
    return path.read_bytes()


def ffprobe_packets(path) -> list[tuple]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_packets", "-show_data_hash", "sha256", "-show_entries",
                          "packet=stream_index,pts,size,flags,data_hash", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    rows = [line.split(",") for line in out.split()]
    return [(int(stream), int(pts), int(size), flags[0] == "K", digest.split(":")[1])
            for stream, pts, size, flags, digest in rows]


@pytest.mark.parametrize("name, args", [
    # H.264 with B-frames: timestamps out of order, so coded rather than predicted
    ("h264-bframes", ("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "6", "-c:v", "libx264",
                      "-bf", "3", "-g", "50")),
    # two streams, and frames whose first bytes NUT elides (00 00 01 B6, FF FD): put back on reading
    ("mpeg4-mp2", ("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i",
                   "sine=frequency=440:sample_rate=44100", "-t", "4", "-c:v", "mpeg4", "-c:a", "mp2")),
])
def test_nut_packets_read_from_a_pipe_are_ffprobes(tmp_path, name, args):
    """Every packet ffmpeg muxed, byte for byte, with its timestamp and keyframe flag, whatever
    pieces the pipe delivers it in (a small buffer that must grow and move what it holds)."""
    data = nut_of(tmp_path, name, *args)
    read, write = os.pipe()
    sizes = random.Random(name)

    def writer():
        at = 0
        while at < len(data):
            at += os.write(write, data[at:at + sizes.choice((1, 7, 100, 4096, 65536, 300_000))])
        os.close(write)

    thread = threading.Thread(target=writer)
    thread.start()
    demuxer, packets = NutDemuxer(capacity=4096), []
    while demuxer.read(read):
        packets += demuxer.packets()
    thread.join(10)
    os.close(read)
    got = [(p.stream, p.pts, len(p.data), p.keyframe, hashlib.sha256(p.data).hexdigest()) for p in packets]
    assert got == ffprobe_packets(tmp_path / f"{name}.nut") and len(got) > 100
    assert demuxer.time_base(0) == (1, 51200) and demuxer.streams[0].fourcc in (b"H264", b"FMP4")


def test_nut_reader_refuses_what_is_not_nut():
    with pytest.raises(NutError, match="not a NUT stream"):
        NutDemuxer().feed(b"\x00\x00\x00\x01\x09\xf0" + bytes(40))
    assert NutDemuxer().feed(b"nut/multi") == []           # too little to tell yet


def test_picture_head_finds_the_first_slice_without_reading_the_slices():
    units = split_access_units(encode(1, "160x120", "-x264-params", "repeat-headers=1:aud=1"))
    first, head = picture_head(units[0].data)
    assert first == NAL_IDR and [t for t, _ in head][:1] == [NAL_AUD] and {NAL_SPS, NAL_PPS} <= {t for t, _ in head}
    assert picture_head(units[1].data) == (NAL_SLICE, [(NAL_AUD, nal_units(units[1].data)[0][1])])
    assert picture_head(b"\x00\x00\x00\x01\x67\x42\x00")[0] == 0        # parameter sets, no picture


# --------------------------------------------------------------------------- the camera's timestamps


def test_pictures_keep_the_cameras_timing_on_the_nodes_clock():
    clock = CameraClock(jump_us=5_000_000)
    # The first picture of a connection is placed on the node's clock; after it, the camera's own
    # steps count, however the pictures arrived (here: two in one read)
    assert [clock.stamp(camera, arrived) for camera, arrived in
            [(0, 1_000_000), (40_000, 1_500_000), (80_000, 1_500_000)]] == [1_000_000, 1_040_000, 1_080_000]
    # a picture stamped before the one in front of it (a B-frame): just after that one
    assert clock.stamp(60_000, 1_500_000) == 1_080_001
    assert clock.stamp(120_000, 2_000_000) == 1_120_000
    # the camera's clock jumps by an hour: on from the node's clock (0.5 s passed here)
    assert clock.stamp(3_600_120_000, 2_500_000) == 1_620_000
    assert clock.stamp(3_600_160_000, 2_500_000) == 1_660_000
    # a new connection starts its timestamps afresh: the node's clock again, never backwards
    clock.reconnected()
    assert clock.stamp(0, 9_000_000) == 9_000_000
    clock.reconnected()
    assert clock.stamp(500, 8_000_000) == 9_000_001
