"""A robot script with every kind of device running at once, until Ctrl+C: the shape rtcbot recommends.

A simulated camera and microphone, a Speaker playing the microphone (in its own process), and a
SerialConnection (in the event loop) to a simulated Arduino on a pty. The robot loop reads frames and sends a
motor command per frame. Run it and press Ctrl+C::

    python tests/scripts/all_devices.py              # Speaker on the default output (a PulseAudio sink)
    python tests/scripts/all_devices.py --fake-audio # Speaker on tests/fakes/sounddevice.py

How it handles Ctrl+C (the pattern the README recommends): ``asyncio.run`` cancels ``main()`` on SIGINT,
the ``with`` blocks close every device on the way out (workers joined, shared memory freed), then
``asyncio.run`` raises KeyboardInterrupt, which the ``if __name__`` block turns into a quiet exit.

Prints ``starting <pid>``, ``opening <device>`` before each device, ``ready <pid>`` once every device
delivered, then one ``tick <frames> <readings>`` line a second; tests wait on those lines
(tests/test_robustness.py). ``--no-with`` creates the devices without ``with``
blocks and never closes them, to check what rtcbot does for a script that forgets to.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import os
import signal
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino  # noqa: E402
from rtcbot.devices.audio import Speaker  # noqa: E402
from rtcbot.devices.serial import SerialConnection  # noqa: E402
from rtcbot.devices.sim import SimCamera, SimMicrophone  # noqa: E402

WAIT = 15.0  # seconds any device may take to become ready on a busy machine


class FakeSpeaker(Speaker):
    """A Speaker whose worker process plays on the fake sounddevice (no sound server needed)."""

    _sounddevice_module = "tests.fakes.sounddevice"


def make_speaker(fake: bool) -> Any:
    if fake:
        from tests.fakes import sounddevice

        sys.modules["sounddevice"] = sounddevice
        return FakeSpeaker(blocksize=480)
    return Speaker(blocksize=480, device=os.environ.get("RTCBOT_SPEAKER") or None)


async def within(awaitable: Any, seconds: float = WAIT) -> Any:
    """``asyncio.wait_for`` that never swallows Ctrl+C: on Python <= 3.11, wait_for returns the result instead
    of raising when the cancellation lands just as the awaited thing completes (CPython gh-86296), e.g. a
    Ctrl+C while devices start, right before ``wait_for(camera.onReady())``; the script then runs on."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    finally:
        if not task.done():
            task.cancel()
    if not done:
        raise TimeoutError(f"no answer within {seconds} s")
    return task.result()


async def run_robot(
    camera: Any, mic: Any, speaker: Any, conn: Any, ticks_every: float = 1.0
) -> None:
    speaker.putSubscription(mic)
    for device in (camera, mic, speaker, conn):
        await within(device.onReady())
    readings = conn.subscribe()
    await within(camera.get())
    conn.put_nowait({"left": 0, "right": 0})
    await within(readings.get())
    print("ready", os.getpid(), flush=True)
    frames = got = 0
    loop = asyncio.get_running_loop()
    next_tick = loop.time() + ticks_every
    while True:
        frame = await camera.get()
        frames += 1
        conn.put_nowait({"left": frame.index % 200, "right": -(frame.index % 200)})
        while not readings.empty():
            readings.get_nowait()
            got += 1
        if loop.time() >= next_tick:
            next_tick += ticks_every
            print("tick", frames, got, flush=True)


def dump_tasks() -> None:
    """Print where every task waits (a test that times out sends SIGUSR2 to ask)."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


async def main(args: argparse.Namespace) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump_tasks)
    print("starting", os.getpid(), flush=True)
    if args.no_with:
        arduino = SimulatedArduino()
        speaker = make_speaker(args.fake_audio)
        await run_robot(
            SimCamera(fps=30), SimMicrophone(), speaker, SerialConnection(arduino.port, **SERIAL_OPTIONS)
        )
        return
    # The Speaker (a spawned process) starts before the camera: SimCamera imports OpenCV in its worker
    # thread, and OpenCV's loader puts its own directory on sys.path while it imports, which a process
    # spawned at that moment inherits (it then imports cv2/typing as `typing` and dies).
    with contextlib.ExitStack() as stack:

        def open_device(name: str, make: Any) -> Any:
            print("opening", name, flush=True)  # a test can Ctrl+C at each step of the start-up
            return stack.enter_context(make())

        arduino = open_device("arduino", SimulatedArduino)
        speaker = open_device("speaker", lambda: make_speaker(args.fake_audio))
        camera = open_device("camera", lambda: SimCamera(fps=30))
        mic = open_device("microphone", SimMicrophone)
        conn = open_device("serial", lambda: SerialConnection(arduino.port, **SERIAL_OPTIONS))
        await run_robot(camera, mic, speaker, conn)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # a test that times out asks where every thread is stuck
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake-audio", action="store_true", help="play on tests/fakes/sounddevice.py")
    parser.add_argument("--no-with", action="store_true", help="never close the devices (atexit does)")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
