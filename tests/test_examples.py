"""Every example runs in --sim mode on a machine without hardware, stops by itself and prints what it should."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


# Examples that need an optional extra, and a module that tells whether it is installed.
NEEDS = {"browser_robot.py": "aiohttp"}


def start_example(*argv: str, stdin: Any = "", timeout: float = 45) -> subprocess.CompletedProcess:
    """Run ``python examples/<argv>`` from the repository; ``stdin`` is text, or an open file to read."""
    needed = NEEDS.get(argv[0].removeprefix("examples/"))
    if needed is not None:
        pytest.importorskip(needed, reason=f"{argv[0]} needs the web extra")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    text_input = {"input": stdin} if isinstance(stdin, str) else {"stdin": stdin}
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO, **text_input
    )


def run_example(*argv: str, stdin: Any = "", timeout: float = 45) -> str:
    """Run ``python examples/<argv>``; its stdout, after asserting exit code 0."""
    result = start_example(*argv, stdin=stdin, timeout=timeout)
    assert result.returncode == 0, f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


#: Every example; each runs with --sim and stops after --seconds (tests below run each so).
ALL_EXAMPLES = {
    "mic_level.py",
    "speaker_tone.py",
    "track_colour.py",
    "robot_keyboard.py",
    "offload/robot.py",
    "offload/desktop.py",
    "browser_robot.py",
}


def test_every_example_is_tested_here():
    found = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.py") if p.parts[-2] != "hil"}
    assert found == set(ALL_EXAMPLES)


@pytest.mark.parametrize("example", sorted(ALL_EXAMPLES))
def test_every_example_shares_the_sim_and_seconds_flags(example):
    help_text = run_example(f"examples/{example}", "--help")
    assert "--sim" in help_text and "--seconds" in help_text


@pytest.mark.parametrize("example", sorted(ALL_EXAMPLES))
def test_every_example_rejects_a_negative_duration(example):
    result = start_example(f"examples/{example}", "--sim", "--seconds", "-1")
    assert result.returncode == 2 and "--seconds" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("speaker_tone.py", "--sim", "--frequency", "-440"),
        ("offload/robot.py", "--sim", "--fps", "0"),
        ("offload/robot.py", "--sim", "--jpeg-quality", "101"),
        ("offload/desktop.py", "--speed", "-10"),
    ],
)
def test_examples_reject_out_of_range_values(argv):
    result = start_example(f"examples/{argv[0]}", *argv[1:])
    assert result.returncode == 2 and argv[-2] in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("robot_keyboard.py", "--port", "/nonexistent/ttyACM9", "--seconds", "1"),
        ("track_colour.py", "--camera", "/nonexistent/video9", "--seconds", "1"),
    ],
)
def test_an_rtcbot_error_is_one_line_naming_what_to_check(argv):
    pytest.importorskip("serial")
    pytest.importorskip("cv2")
    result = start_example(f"examples/{argv[0]}", *argv[1:], stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{Path(argv[0]).name}: ") and "/nonexistent/" in last


def test_offload_desktop_tracks_the_simulated_robots_video():
    pytest.importorskip("zenoh")
    pytest.importorskip("cv2")
    out = run_example("examples/offload/desktop.py", "--sim", "--seconds", "5")  # leaves time to start under load
    assert re.search(r"\d+ frames tracked, object \(", out), out


def test_offload_robot_streams_with_the_simulated_devices():
    pytest.importorskip("zenoh")
    out = run_example("examples/offload/robot.py", "--sim", "--seconds", "1.5", "--no-multicast")
    assert re.search(r"sent [1-9]\d* frames", out), out


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


def test_robot_keyboard_reads_keys_from_a_file(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("wd")
    with open(keys) as stdin:
        out = run_example("examples/robot_keyboard.py", "--sim", "--seconds", "1", stdin=stdin)
    assert "key 'w': left=150 right=150" in out and "key 'd': left=150 right=-150" in out


def test_robot_keyboard_runs_with_stdin_from_dev_null_as_under_systemd_or_nohup():
    out = run_example("examples/robot_keyboard.py", "--sim", "--seconds", "1", stdin=subprocess.DEVNULL)
    assert "reading: left=0 right=0" in out and out.rstrip().endswith("stopped")


def test_robot_keyboard_stops_the_motors_on_sigterm():
    import selectors
    import signal

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "examples/robot_keyboard.py", "--sim", "--seconds", "30"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(20), "the example printed nothing"
        assert proc.stdout.readline().startswith("keys:")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
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
