"""A stand-in IP camera: GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0) on loopback.

Run as a script by the *system* Python (`/usr/bin/python3`, which has PyGObject; the
project's venv does not), it serves one synthetic stream at rtsp://127.0.0.1:PORT/stream:
`videotestsrc` (live, paced by the clock) encoded by x264 (or x265, to stand in for an
H.265 camera) and payloaded as RTP, with HTTP basic authentication. The user name and
password are read from standard input ("user:password" on one line), never from the
command line, so they do not show in `ps` either. It prints "READY <port>" once it serves.

Imported (by the tests and the benchmarks), `RtspCamera` starts and stops that process.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve()


def pipeline(width: int, height: int, fps: int, kbps: int, keyframe_seconds: int, codec: str,
             pattern: str) -> str:
    source = (f"videotestsrc is-live=true pattern={pattern} ! "
              f"capsfilter name=size caps=video/x-raw,width={width},height={height},framerate={fps}/1")
    gop = fps * keyframe_seconds
    if codec == "h265":
        encode = (f"x265enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} ! "
                  "rtph265pay name=pay0 pt=96 config-interval=-1")
    else:
        # config-interval=-1: SPS and PPS in-band before every IDR, as most IP cameras send them
        encode = (f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} "
                  f"threads=1 ! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1")
    return f"( {source} ! {encode} )"


def serve(args: argparse.Namespace) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    credentials = sys.stdin.readline().strip()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(pipeline(args.width, args.height, args.fps, args.kbps, args.keyframe_seconds,
                                args.codec, args.pattern))
    factory.set_shared(True)        # every client gets the same live stream (the benchmark's two readers)
    if credentials:
        user, _, password = credentials.partition(":")
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    # SIGUSR1 switches the picture size mid-stream (as a camera reconfigured from its web page
    # does): x264 starts again with a new SPS and an IDR picture
    size_filters = []
    factory.connect("media-configure", lambda _f, media: size_filters.append(media.get_element().get_by_name("size")))

    def switch_size():
        for capsfilter in size_filters:
            capsfilter.set_property("caps", Gst.Caps.from_string(
                f"video/x-raw,width={args.switch_width},height={args.switch_height},framerate={args.fps}/1"))
        return GLib.SOURCE_CONTINUE

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, switch_size)
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot serve RTSP on 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()


class RtspCamera:
    """The stand-in camera as a child process; `stop()` and `start()` again for an outage."""

    def __init__(self, credentials: str = "", *, port: int = 0, width: int = 320, height: int = 240,
                 fps: int = 10, kbps: int = 400, keyframe_seconds: int = 1, codec: str = "h264",
                 pattern: str = "smpte", log: Path | None = None):
        self.credentials = credentials
        self.port = port
        self.settings = dict(width=width, height=height, fps=fps, kbps=kbps, keyframe_seconds=keyframe_seconds,
                             codec=codec, pattern=pattern)
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"

    def start(self, timeout: float = 30.0) -> None:
        argv = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port)]
        for key, value in self.settings.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        err = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                     start_new_session=True)
        self.proc.stdin.write(self.credentials.encode() + b"\n")
        self.proc.stdin.close()
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"READY "):
                self.port = int(line.split()[1])
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"the RTSP test server did not start ({line!r}); see {self.log}")

    def switch_size(self) -> None:
        """Change the picture size mid-stream (to --switch-width x --switch-height)."""
        os.kill(self.proc.pid, signal.SIGUSR1)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> RtspCamera:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def available() -> str | None:
    """None if the stand-in camera can run here, else what is missing (and how to install it)."""
    elements = ("videotestsrc", "x264enc", "x265enc", "rtph264pay", "rtph265pay")
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst; Gst.init(None); "
             f"print(' '.join(e for e in {elements!r} if not Gst.ElementFactory.find(e)))")
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{SYSTEM_PYTHON}: {e}"
    if done.returncode != 0 or done.stdout.strip():
        return ("GStreamer's RTSP server is missing (" + (done.stdout.strip() or done.stderr.strip()[-200:]) +
                "): apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
                "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad")
    return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--kbps", type=int, default=400)
    parser.add_argument("--keyframe-seconds", type=int, default=1)
    parser.add_argument("--codec", choices=("h264", "h265"), default="h264")
    parser.add_argument("--switch-width", type=int, default=640, help="the size SIGUSR1 switches to")
    parser.add_argument("--switch-height", type=int, default=480)
    parser.add_argument("--pattern", default="smpte")
    serve(parser.parse_args())
