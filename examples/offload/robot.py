"""The robot side of offloading: publish the camera, drive the motors with commands from the desktop.

    python examples/offload/robot.py --sim                                # simulated camera and Arduino
    python examples/offload/robot.py --sim --seconds 10                   # ... and stop after 10 s
    python examples/offload/robot.py --camera 0 --serial /dev/ttyACM0     # the real robot
    python examples/offload/robot.py --sim --listen tcp/0.0.0.0:7447      # let desktops connect here

Keys (with --name robot1): ``robot1/camera`` JPEG frames (latest wins), ``robot1/cmd`` motor commands
``{"left": -255..255, "right": -255..255}`` (reliable, in order), ``robot1/sensors`` Arduino readings.
The Arduino (examples/arduino/) stops the motors by itself if commands stop for half a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import List, Optional

from rtcbot import RtcbotError
from rtcbot.cli.options import int_in_range, positive_float, positive_int
from rtcbot.net import ZenohPublisher, ZenohSubscriber, configure


async def main(args: argparse.Namespace) -> None:
    # Peer mode with LAN discovery unless told otherwise; --connect/--listen for networks it cannot cross.
    configure(connect=args.connect or None, listen=args.listen or None, multicast=False if args.no_multicast else None)
    from rtcbot import SerialConnection
    from rtcbot.devices.arduino_sim import SERIAL_OPTIONS

    with contextlib.ExitStack() as stack:
        if args.sim:
            from rtcbot import SimCamera
            from rtcbot.devices.arduino_sim import SimulatedArduino

            camera = stack.enter_context(SimCamera(width=args.width, height=args.height, fps=args.fps))
            port = stack.enter_context(SimulatedArduino()).port
        else:
            from rtcbot import CVCamera

            camera = stack.enter_context(CVCamera(width=args.width, height=args.height, cameranumber=args.camera))
            port = args.serial
        serial = stack.enter_context(SerialConnection(port, **SERIAL_OPTIONS))

        # Camera -> network: every frame as a JPEG; under congestion old frames are dropped, not queued.
        video = stack.enter_context(ZenohPublisher(f"{args.name}/camera", jpeg_quality=args.jpeg_quality))
        video.putSubscription(camera)
        # Network -> motors: commands arrive reliably and in order, straight into the serial port.
        commands = stack.enter_context(ZenohSubscriber(f"{args.name}/cmd"))
        serial.putSubscription(commands)
        # Sensors -> network, so the desktop sees what the motors do.
        sensors = stack.enter_context(ZenohPublisher(f"{args.name}/sensors", delivery="reliable"))
        sensors.putSubscription(serial)

        print(f"robot {args.name!r} streaming; Ctrl+C to stop")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(serial.onClose(), args.seconds)  # runs until the serial port goes away
        print(f"sent {video.stats.sent} frames, got {commands.stats.received} commands")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", action="store_true", help="simulated camera and Arduino (runs anywhere)")
    parser.add_argument("--name", default="robot1", help="key prefix, one per robot (default: robot1)")
    parser.add_argument("--camera", type=int_in_range(0, 63), default=0, help="OpenCV camera number (default: 0)")
    parser.add_argument("--serial", default="/dev/ttyACM0", help="the Arduino's serial port")
    parser.add_argument("--width", type=positive_int, default=640)
    parser.add_argument("--height", type=positive_int, default=480)
    parser.add_argument("--fps", type=positive_float, default=30)
    parser.add_argument("--jpeg-quality", type=int_in_range(1, 100), default=80)
    parser.add_argument(
        "--connect", action="append", default=[], help="Zenoh endpoint to reach, e.g. tcp/192.168.1.20:7447"
    )
    parser.add_argument(
        "--listen", action="append", default=[], help="Zenoh endpoint to accept on, e.g. tcp/0.0.0.0:7447"
    )
    parser.add_argument("--no-multicast", action="store_true", help="no LAN discovery: use --connect/--listen")
    parser.add_argument("--seconds", type=positive_float, help="stop after this many seconds (default: until Ctrl+C)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        pass
    except RtcbotError as e:  # e.g. no camera: the message says what to check
        sys.exit(f"robot.py: {e}")
