"""Steer a robot towards a coloured object: camera frames -> OpenCV colour mask -> motor commands.

    python examples/track_colour.py --sim --seconds 5          # test pattern camera + simulated Arduino
    python examples/track_colour.py --colour red --port /dev/rtcbot/arduino --camera 0

The robot turns so the largest patch of the colour stays in the middle of the image, and spins slowly to
search when it sees none. In --sim the camera shows moving colour bars, so the yellow bar drifts across
the image and the steering follows it. The motors are driven by the sketch in examples/arduino.
"""
import argparse
import asyncio
import contextlib
import sys

import cv2
import numpy as np

from rtcbot import CVCamera, RtcbotError, SerialConnection, SimCamera
from rtcbot.cli.options import positive_float
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino

# Hue ranges in OpenCV's HSV (hue 0..179); saturation and value must be high enough to be a colour.
COLOURS = {"yellow": (20, 35), "green": (45, 75), "blue": (100, 130), "red": (170, 179)}
SPEED = 120  # forward speed when the target is centred (of 255)
TURN = 100  # extra speed difference when it is at the edge of the image
MIN_AREA = 0.01  # fraction of the image the colour must cover to count as seen


def find_colour(frame: np.ndarray, hue_range) -> "float | None":
    """Horizontal position of the colour's centre, -1 (left edge) .. 1 (right edge), or None if not seen."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    mask = cv2.inRange(hsv, (hue_range[0], 100, 100), (hue_range[1], 255, 255))
    m = cv2.moments(mask, binaryImage=True)
    if m["m00"] < MIN_AREA * mask.size:
        return None
    x = m["m10"] / m["m00"]  # centroid column
    return 2 * x / mask.shape[1] - 1


def steer(position: "float | None"):
    """(left, right) motor speeds: turn towards the target, or spin slowly to look for it."""
    if position is None:
        return 60, -60
    return int(SPEED + TURN * position), int(SPEED - TURN * position)


async def main(args: argparse.Namespace) -> None:
    # --sim: a test-pattern camera, and a simulated Arduino serving the sketch's protocol on a pty.
    with SimulatedArduino() if args.sim else contextlib.nullcontext() as sim:
        port = sim.port if sim else args.port
        camera = SimCamera(fps=15) if args.sim else CVCamera(cameranumber=args.camera)
        with camera, SerialConnection(port, **SERIAL_OPTIONS) as motors:
            loop = asyncio.get_running_loop()
            stop_at = loop.time() + args.seconds if args.seconds else float("inf")
            shown = 0
            while loop.time() < stop_at:
                frame = await camera.get()  # always the newest frame: no backlog if processing is slow
                position = find_colour(frame, COLOURS[args.colour])
                left, right = steer(position)
                motors.put_nowait({"left": left, "right": right})  # at the camera's rate: > 5 Hz watchdog
                if frame.index >= shown:  # print about twice a second
                    seen = "not seen" if position is None else f"at {position:+.2f}"
                    print(f"frame {frame.index}: {args.colour} {seen} -> left={left} right={right}", flush=True)
                    shown = frame.index + int(camera.fps / 2)
            motors.put_nowait({"left": 0, "right": 0})  # stop (the watchdog would too, 0.5 s later)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", action="store_true", help="simulated camera and Arduino (no hardware)")
    parser.add_argument("--camera", default="0", help="camera index or /dev/video path (default 0)")
    parser.add_argument("--port", default="/dev/ttyACM0", help="the Arduino's serial port")
    parser.add_argument("--colour", choices=sorted(COLOURS), default="yellow", help="colour to follow")
    parser.add_argument("--seconds", type=positive_float, help="stop after this many seconds (default: until Ctrl+C)")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
    except RtcbotError as e:  # e.g. no such device: the message says what to check
        sys.exit(f"{parser.prog}: {e}")
