"""A loopback RTSP server for the recording tests: Debian's gst-rtsp-server through python3-gi.

Run with the system interpreter (/usr/bin/python3: the gi bindings live only there):
    rtsp_server.py PORT   -> rtsp://127.0.0.1:PORT/test, H.264 (1 s GOP) + Opus, with RTCP
Prints "ready" once listening; runs until terminated.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=25/1 "
    "! x264enc tune=zerolatency speed-preset=veryfast key-int-max=25 "
    "! video/x-h264,profile=high ! rtph264pay name=pay0 pt=96 "
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc "
    "! rtpopuspay name=pay1 pt=97 )"
)


def main() -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1])
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
