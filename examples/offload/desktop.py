"""The desktop side of offloading: track a coloured object in the robot's video, send motor commands.

    python examples/offload/desktop.py --sim --seconds 5                 # with a simulated robot in-process
    python examples/offload/desktop.py                                   # finds the robot on the LAN
    python examples/offload/desktop.py --connect tcp/192.168.1.42:7447   # or connects to it directly
    python examples/offload/desktop.py --colour red --speed 120

Steering: the robot turns towards the object's centre and drives while it is small (far away); it stops
when it sees nothing. With ``robot.py --sim`` the "object" is a colour bar of the test pattern.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Optional, Tuple

import numpy as np

from rtcbot import RtcbotError
from rtcbot.cli.options import int_in_range, positive_float
from rtcbot.net import ZenohPublisher, ZenohSubscriber, configure

# Hue ranges in OpenCV's HSV (hue 0..179), with enough saturation and brightness to be a real colour.
COLOURS = {"red": [(0, 10), (170, 179)], "green": [(45, 75)], "blue": [(100, 130)], "yellow": [(22, 35)]}


def find_object(frame: np.ndarray, colour: str) -> Optional[Tuple[float, float]]:
    """(x offset from the centre in -1..1, fraction of the image covered) of the largest blob, or None."""
    import cv2

    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    mask = np.zeros(hsv.shape[:2], np.uint8)
    for low, high in COLOURS[colour]:
        mask |= cv2.inRange(hsv, (low, 100, 80), (high, 255, 255))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    blob = max(contours, key=cv2.contourArea)
    moments = cv2.moments(blob)
    if moments["m00"] < 50:  # a few noisy pixels are not an object
        return None
    width = frame.shape[1]
    return (moments["m10"] / moments["m00"] - width / 2) / (width / 2), moments["m00"] / mask.size


def steer(found: Optional[Tuple[float, float]], speed: int) -> dict:
    """Motor command for what was found: turn towards it, slow down as it grows, stop if nothing."""
    if found is None:
        return {"left": 0, "right": 0}
    offset, area = found
    forward = speed * max(0.0, 1.0 - 4 * area)  # full speed when far, stop when it fills a quarter
    turn = speed * offset
    clamp = lambda v: int(max(-255, min(255, v)))  # noqa: E731
    return {"left": clamp(forward + turn), "right": clamp(forward - turn)}


async def main(args: argparse.Namespace) -> None:
    if args.sim:
        # robot.py --sim in this process: the two sides meet in one Zenoh session, no network needed
        import robot

        configure(multicast=False)  # the options robot.py --no-multicast sets: so both share one session
        robot_args = robot.parse_args(["--sim", "--name", args.name, "--no-multicast"])
        robot_task = asyncio.ensure_future(robot.main(robot_args))
        try:
            await desktop(args)
        finally:
            robot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await robot_task
    else:
        configure(
            connect=args.connect or None, listen=args.listen or None, multicast=False if args.no_multicast else None
        )
        await desktop(args)


async def desktop(args: argparse.Namespace) -> None:
    """Track the colour in the robot's video and send it motor commands, until --seconds (or Ctrl+C)."""
    with contextlib.ExitStack() as stack:
        # Video: only the newest frame matters, so a slow tracker never works on a backlog.
        video = stack.enter_context(ZenohSubscriber(f"{args.name}/camera", delivery="latest"))
        commands = stack.enter_context(ZenohPublisher(f"{args.name}/cmd", delivery="reliable"))
        sensors = stack.enter_context(ZenohSubscriber(f"{args.name}/sensors", delivery="latest"))
        frames = video.subscribe()
        readings = sensors.subscribe()
        loop = asyncio.get_running_loop()
        end = None if args.seconds is None else loop.time() + args.seconds
        last_report = time.monotonic()
        tracked = 0
        while end is None or loop.time() < end:
            try:
                frame = await asyncio.wait_for(frames.get(), 5.0 if end is None else max(0.1, end - loop.time()))
            except asyncio.TimeoutError:
                print("no video from", args.name, "(is robot.py running? try --connect)")
                continue
            # OpenCV work runs off the event loop so video and commands keep flowing meanwhile.
            found = await loop.run_in_executor(None, find_object, frame, args.colour)
            commands.put_nowait(steer(found, args.speed))
            tracked += 1
            if time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                reading = readings.get_nowait() if not readings.empty() else None
                print(f"{tracked} frames tracked, object {found}, robot says {reading}")
        commands.put_nowait({"left": 0, "right": 0})  # leave the robot stopped
        await commands.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="robot1", help="the robot's key prefix (default: robot1)")
    parser.add_argument("--colour", choices=sorted(COLOURS), default="green")
    parser.add_argument("--speed", type=int_in_range(0, 255), default=150, help="top motor speed, 0..255")
    parser.add_argument(
        "--connect", action="append", default=[], help="Zenoh endpoint to reach, e.g. tcp/192.168.1.42:7447"
    )
    parser.add_argument("--listen", action="append", default=[], help="Zenoh endpoint to accept on")
    parser.add_argument("--no-multicast", action="store_true", help="no LAN discovery: use --connect/--listen")
    parser.add_argument("--sim", action="store_true", help="run a simulated robot (robot.py --sim) in this process")
    parser.add_argument("--seconds", type=positive_float, help="stop after this many seconds (default: until Ctrl+C)")
    args = parser.parse_args()
    try:
        asyncio.run(main(args))
    except KeyboardInterrupt:
        pass
    except RtcbotError as e:  # e.g. a Zenoh endpoint that cannot be opened: the message says what to check
        sys.exit(f"desktop.py: {e}")
