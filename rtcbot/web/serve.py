"""``rtcbot serve``: the robot's dashboard in a browser (see :mod:`rtcbot.web.dashboard`).

    rtcbot serve --sim                        # simulated camera, microphone, speaker and Arduino
    rtcbot serve --serial /dev/rtcbot/arduino # every camera found, the default sound devices, real motors
    rtcbot serve --host 127.0.0.1 --port 9000
    rtcbot serve --no-h264                    # Pi CSI cameras encoded in software (--codec) too

Open the printed address in a browser on the same network. No internet is needed: connections use host
candidates only, unless ``--ice-server stun:...`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
from typing import Any, Dict, List, Optional

__all__ = ["add_arguments", "main"]

log = logging.getLogger("rtcbot.web.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rtcbot serve``."""
    parser.add_argument("--sim", action="store_true", help="simulated devices: camera(s), microphone, speaker, Arduino")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--serial", metavar="PORT", help="motor controller running examples/arduino's sketch")
    parser.add_argument("--cameras", type=int, default=1, metavar="N", help="with --sim: how many cameras (1)")
    parser.add_argument("--width", type=int, default=640, help="camera width (640)")
    parser.add_argument("--height", type=int, default=480, help="camera height (480)")
    parser.add_argument("--fps", type=float, default=30, help="camera frame rate (30)")
    parser.add_argument(
        "--codec", choices=("vp8", "h264"), default="vp8", help="video codec of cameras encoded in software (vp8)"
    )
    parser.add_argument(
        "--h264",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Pi CSI cameras (PiCamera2) send their hardware encoder's H.264 as it is, with no CPU encode "
        "(default: on; --no-h264 encodes them in software with --codec)",
    )
    parser.add_argument("--no-audio", action="store_true", help="no microphone or speaker")
    parser.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="STUN/TURN server (repeatable; none by default)",
    )
    parser.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0: until Ctrl+C)")


def main(args: argparse.Namespace) -> int:
    """Runs the dashboard until Ctrl+C (or ``--seconds``); returns the exit status."""
    from ._require import require_web as require

    require("aiortc")
    require("aiohttp")
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"rtcbot serve: {e}")
        return 1
    return 0


def _lan_addresses() -> List[str]:
    """This machine's IPv4 addresses other than loopback (best effort, for the printed URLs)."""
    addresses = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addresses.add(str(info[4][0]))
    return sorted(a for a in addresses if not a.startswith("127."))


class _Devices(contextlib.AsyncExitStack):
    """Opens the devices the dashboard shows; closes every one that opened, in reverse order."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args
        self.cameras: Dict[str, Any] = {}
        self.microphone: Any = None
        self.speaker: Any = None
        self.motors: Any = None

    def _keep(self, device: Any) -> Any:
        self.callback(device.close)
        return device

    async def open(self) -> None:
        args = self.args
        if args.sim:
            from ..devices.sim import SimCamera, SimMicrophone, SimSpeaker

            for n in range(max(0, args.cameras)):
                self.cameras[f"sim{n}"] = self._keep(SimCamera(width=args.width, height=args.height, fps=args.fps))
            if not args.no_audio:
                self.microphone = self._keep(SimMicrophone())
                self.speaker = self._keep(SimSpeaker())
        else:
            self._open_cameras()
            if not args.no_audio:
                self._open_audio()
        port = args.serial
        if port is None and args.sim:
            from ..devices.arduino_sim import SimulatedArduino

            port = self._keep(SimulatedArduino()).port
        if port is not None:
            from ..devices.arduino_sim import SERIAL_OPTIONS
            from ..devices.serial import SerialConnection

            self.motors = self._keep(SerialConnection(port, **SERIAL_OPTIONS))

    def _open_cameras(self) -> None:
        from ..discovery import list_cameras

        args = self.args
        for camera in list_cameras():
            device: Any
            try:
                if camera.kind == "csi":
                    from ..devices.picamera import PiCamera2

                    device = PiCamera2(width=args.width, height=args.height, cameranumber=camera.index, fps=args.fps)
                    if args.h264:
                        self.cameras[camera.id] = self._hardware_h264(self._keep(device))
                        continue
                elif camera.capture is not False:
                    from ..devices.camera import CVCamera

                    device = CVCamera(width=args.width, height=args.height, cameranumber=camera.index, fps=args.fps)
                else:
                    continue
            except Exception as e:  # one camera that will not open must not stop the others
                log.warning("camera %s (%s) not shown: %s", camera.id, camera.name, e)
                continue
            self.cameras[camera.id] = self._keep(device)

    def _hardware_h264(self, camera: Any) -> Any:
        """The camera's hardware H.264 encoder (PiCamera2H264); the camera itself when that will not start."""
        try:
            from ..devices.picamera_h264 import PiCamera2H264

            return self._keep(PiCamera2H264(camera))
        except Exception as e:
            log.warning("%s: no hardware H.264 (%s); encoded in software (%s)", camera.describe(), e, self.args.codec)
            return camera

    def _open_audio(self) -> None:
        try:
            from ..devices.audio import Microphone, Speaker

            self.microphone = self._keep(Microphone())
            self.speaker = self._keep(Speaker())
        except Exception as e:
            log.warning("no sound on the dashboard: %s", e)


async def _serve(args: argparse.Namespace) -> None:
    from .dashboard import Dashboard

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with _Devices(args) as devices:
            await devices.open()
            async with Dashboard(
                cameras=devices.cameras,
                microphone=devices.microphone,
                speaker=devices.speaker,
                motors=devices.motors,
                iceServers=args.ice_server or None,
                codec=args.codec,
            ) as dashboard:
                url = await dashboard.start(args.host, args.port)
                print(f"rtcbot dashboard: {url}", flush=True)
                if args.host in ("0.0.0.0", ""):
                    port = url.rsplit(":", 1)[1].rstrip("/")
                    for address in _lan_addresses():
                        print(f"  on the network: http://{address}:{port}/", flush=True)
                shown = ", ".join(devices.cameras) or "none"
                print(
                    f"  cameras: {shown}; motors: {args.serial or ('simulated' if devices.motors else 'none')}",
                    flush=True,
                )
                await _until(stop, args.seconds)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _until(stop: asyncio.Event, seconds: Optional[float]) -> None:
    if seconds:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    else:
        await stop.wait()


def _run_standalone() -> int:
    parser = argparse.ArgumentParser(prog="rtcbot serve", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return main(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(_run_standalone())
