"""Play a tone or a WAV file on a speaker.

    python examples/speaker_tone.py --sim                      # a simulated speaker (measures, no sound)
    python examples/speaker_tone.py --frequency 880 --seconds 2
    python examples/speaker_tone.py --wav hello.wav --device USB

`rtcbot devices` lists the outputs. A Speaker keeps at most a fraction of a second queued (older audio is
dropped rather than played late), so the loop below hands it audio at the pace it plays: one block per
block duration, a little ahead.
"""
import argparse
import asyncio
import sys
import wave

import numpy as np

from rtcbot import RtcbotError, Speaker
from rtcbot.cli.options import positive_float
from rtcbot.devices.sim import SimSpeaker, tone_block

BLOCK = 1024  # frames per block handed to the speaker
AHEAD = 0.1  # seconds of audio kept queued ahead of playback


def wav_blocks(path: str):
    """(samplerate, channels, blocks of int16 samples) of a 16-bit WAV file."""
    try:
        with wave.open(path, "rb") as w:
            if w.getsampwidth() != 2:
                raise SystemExit(f"{path}: only 16-bit WAV files are supported")
            rate, channels = w.getframerate(), w.getnchannels()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, channels)
    except (OSError, EOFError, wave.Error) as e:
        raise SystemExit(f"{path}: not a WAV file rtcbot can read ({e})") from None
    return rate, channels, [samples[i : i + BLOCK] for i in range(0, len(samples), BLOCK)]


def tone_blocks(frequency: float, seconds: float, rate: int):
    """Blocks of a sine tone at -10 dBFS peak (not too loud on a robot's speaker)."""
    total = int(seconds * rate)
    return [
        tone_block(i, min(BLOCK, total - i), samplerate=rate, frequency=frequency, amplitude=0.3, noise=0)
        for i in range(0, total, BLOCK)
    ]


async def main(args: argparse.Namespace) -> None:
    if args.wav:
        rate, channels, blocks = wav_blocks(args.wav)
        if args.seconds:
            blocks = blocks[: int(args.seconds * rate / BLOCK) + 1]
        what = args.wav
    else:
        rate, channels = 48000, 1
        blocks = tone_blocks(args.frequency, args.seconds or 3.0, rate)
        what = f"a {args.frequency:g} Hz tone"
    device = int(args.device) if args.device and args.device.isdigit() else args.device
    speaker = SimSpeaker(rate, channels) if args.sim else Speaker(rate, channels, device=device)
    with speaker:
        await speaker.onReady()  # the sound card is open
        print(f"playing {what} ({len(blocks) * BLOCK / rate:.1f} s) on {speaker.device_name}", flush=True)
        loop = asyncio.get_running_loop()
        due = loop.time() - AHEAD  # when the next block should be handed over
        for block in blocks:
            speaker.put_nowait(block)
            due += len(block) / rate
            await asyncio.sleep(max(0.0, due - loop.time()))  # pacing: the speaker plays in real time
        if args.sim:
            await speaker.received(sum(len(b) for b in blocks))
            print(f"simulated speaker received {speaker.frames / rate:.1f} s at {speaker.level_dbfs:.1f} dBFS")
        else:
            await asyncio.sleep(AHEAD)  # let the queued audio play out before closing
    print("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", action="store_true", help="use a simulated speaker (no hardware, no sound)")
    parser.add_argument("--device", help="speaker index or part of its name (default: the default output)")
    parser.add_argument("--wav", help="a 16-bit WAV file to play instead of a tone")
    parser.add_argument("--frequency", type=positive_float, default=440.0, help="tone frequency in Hz (default 440)")
    parser.add_argument("--seconds", type=positive_float, help="how long to play (tone default 3 s; WAV: whole file)")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
    except RtcbotError as e:  # e.g. no such device: the message says what to check
        sys.exit(f"{parser.prog}: {e}")
