"""A microphone level meter: prints the sound level a few times a second.

    python examples/mic_level.py --sim                # a simulated microphone hearing a 440 Hz tone
    python examples/mic_level.py --device USB         # a real microphone (part of its name, or an index)
    python examples/mic_level.py --seconds 10         # stop by itself after 10 s (default: Ctrl+C)

`rtcbot devices` lists the microphones. The level is the RMS in dBFS: 0 is the loudest a sound card can
record, a quiet room is around -60, speech close to the mic around -20.
"""
import argparse
import asyncio
import math
import sys

import numpy as np

from rtcbot import BoundedQueue, Microphone, RtcbotError, SimMicrophone
from rtcbot.cli.options import positive_float


def level_dbfs(block: np.ndarray) -> float:
    """RMS level of a block of float samples (-1..1) in dB relative to full scale."""
    rms = math.sqrt(float(np.mean(np.square(block, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def meter(dbfs: float, width: int = 40) -> str:
    """A text bar: empty at -60 dBFS and below, full at 0 dBFS."""
    filled = 0 if dbfs == -math.inf else round(width * min(1.0, max(0.0, (dbfs + 60) / 60)))
    return "#" * filled + " " * (width - filled)


async def main(args: argparse.Namespace) -> None:
    device = int(args.device) if args.device and args.device.isdigit() else args.device
    mic = SimMicrophone() if args.sim else Microphone(device=device)
    with mic:
        # A bounded queue: if printing ever falls behind, old blocks are dropped instead of piling up.
        blocks = mic.subscribe(BoundedQueue(32))
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + args.seconds if args.seconds else math.inf
        window = []  # blocks since the last printed line
        next_print = loop.time() + 0.25
        while loop.time() < stop_at:
            window.append(await blocks.get())
            if loop.time() >= next_print:
                dbfs = level_dbfs(np.concatenate(window))
                print(f"{dbfs:6.1f} dBFS |{meter(dbfs)}|", flush=True)
                window.clear()
                next_print += 0.25
        print(f"done: {mic.overflows} overflows" if hasattr(mic, "overflows") else "done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", action="store_true", help="use a simulated microphone (no hardware)")
    parser.add_argument("--device", help="microphone index or part of its name (default: the default input)")
    parser.add_argument("--seconds", type=positive_float, help="stop after this many seconds (default: until Ctrl+C)")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
    except RtcbotError as e:  # e.g. no such device: the message says what to check
        sys.exit(f"{parser.prog}: {e}")
