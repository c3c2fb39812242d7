"""hw.rtsp_source and hw.sps without a camera: settings, credentials, the ffmpeg command, the
parameter sets, the SPS parser against ffprobe. The RTSP server end to end is tests/e2e/test_rtsp.py."""
from __future__ import annotations

import os
import subprocess
import threading
import urllib.parse

import pytest

from hw.settings import CameraSettings
from hw.settings import SettingsError
from hw.annexb import NAL_AUD, NAL_PPS, NAL_SPS, AccessUnit, nal_types, nal_units, split_access_units
from hw.board import Board
from hw.factory import make_backend, rtsp_settings
from hw.ffmpeg_common import drain_lines
from hw.rtsp_source import (
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
