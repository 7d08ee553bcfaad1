"""Every example runs in --sim mode on a machine without hardware, stops by itself and prints what it should."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_example(*argv: str, stdin: str = "", timeout: float = 45) -> str:
    """Run ``python examples/<argv>`` from a scratch directory; its stdout, after asserting exit code 0."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [sys.executable, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )
    assert result.returncode == 0, f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_every_example_is_tested_here():
    tested = {"mic_level.py", "speaker_tone.py", "track_colour.py", "robot_keyboard.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_mic_level_prints_the_simulated_tone_level():
    out = run_example("examples/mic_level.py", "--sim", "--seconds", "1.5")
    levels = [float(x) for x in re.findall(r"(-?\d+\.\d) dBFS \|#+", out)]
    assert len(levels) >= 3
    assert all(-12 < level < -6 for level in levels)  # the -9 dBFS tone


def test_speaker_tone_plays_to_the_simulated_speaker():
    out = run_example("examples/speaker_tone.py", "--sim", "--seconds", "1")
    assert "playing a 440 Hz tone" in out
    assert re.search(r"received 1\.0 s at -1[0-9]\.\d dBFS", out), out


def test_speaker_tone_plays_a_wav_file(tmp_path):
    import wave

    import numpy as np

    path = tmp_path / "beep.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((8000 * np.sin(np.arange(8000) / 5)).astype("<i2").tobytes())
    out = run_example("examples/speaker_tone.py", "--sim", "--wav", str(path))
    assert f"playing {path}" in out and "done" in out


def test_track_colour_steers_towards_the_yellow_bar():
    pytest.importorskip("cv2")
    out = run_example("examples/track_colour.py", "--sim", "--seconds", "3")
    positions = [float(x) for x in re.findall(r"yellow at ([-+]\d\.\d\d) -> left=", out)]
    assert len(positions) >= 3
    assert len(set(positions)) > 1  # the bars move, and so does the target


def test_robot_keyboard_sends_piped_keys_to_the_motors():
    out = run_example("examples/robot_keyboard.py", "--sim", "--seconds", "1.5", stdin="wd")
    assert "key 'w': left=150 right=150" in out
    assert "key 'd': left=150 right=-150" in out
    assert re.search(r"reading: left=150 right=-150", out), out
    assert out.rstrip().endswith("stopped")


def test_hardware_in_the_loop_tests_pass_against_the_simulated_arduino():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("RTCBOT_PORT", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "hil")],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b5 passed\b", result.stdout)
