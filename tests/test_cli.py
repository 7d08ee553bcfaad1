"""The ``rtcbot`` command and device discovery, on this machine (no camera, sound card or USB serial)."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from rtcbot import cli, discovery
from rtcbot.cli import check, output
from rtcbot.discovery import AudioDevice, Camera, Inventory

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str):
    """Run ``rtcbot argv...`` in-process: (exit code, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def nothing_found(monkeypatch):
    """A machine with no camera, no audio device and no serial port."""
    monkeypatch.setattr(discovery, "discover", lambda: Inventory())


@pytest.fixture
def only(monkeypatch):
    """``only(inventory)``: discovery finds exactly this."""

    def set_inventory(inv: Inventory) -> None:
        monkeypatch.setattr(discovery, "discover", lambda: inv)

    return set_inventory


# ------------------------------------------------------------------------------------------ discovery


def test_v4l2_cameras_are_named_from_sysfs(tmp_path):
    sysfs, dev = tmp_path / "sys", tmp_path / "dev"
    for n, name in ((0, "HD Webcam C270"), (10, "bcm2835-codec-decode")):
        (sysfs / f"video{n}").mkdir(parents=True)
        (sysfs / f"video{n}" / "name").write_text(name + "\n")
    cams = discovery.list_v4l2_cameras(str(sysfs), str(dev))
    assert [(c.id, c.name, c.index) for c in cams] == [
        (str(dev / "video0"), "HD Webcam C270", 0),
        (str(dev / "video10"), "bcm2835-codec-decode", 10),
    ]


def test_v4l2_camera_that_cannot_be_queried_says_why(tmp_path):
    sysfs, dev = tmp_path / "sys", tmp_path / "dev"
    (sysfs / "video0").mkdir(parents=True)
    dev.mkdir()
    (dev / "video0").write_text("")  # a file, not a device: the V4L2 query fails
    [cam] = discovery.list_v4l2_cameras(str(sysfs), str(dev))
    assert cam.capture is None
    assert "not a V4L2 device" in cam.note


def test_v4l2_camera_gets_its_stable_by_id_path(tmp_path):
    sysfs, dev = tmp_path / "sys", tmp_path / "dev"
    (sysfs / "video0").mkdir(parents=True)
    (dev / "v4l" / "by-id").mkdir(parents=True)
    (dev / "video0").write_text("")
    link = dev / "v4l" / "by-id" / "usb-Logitech_C270-video-index0"
    link.symlink_to(dev / "video0")
    [cam] = discovery.list_v4l2_cameras(str(sysfs), str(dev))
    assert cam.stable_path == str(link)


def test_serial_ports_get_vid_pid_and_by_id_path(tmp_path, monkeypatch):
    from serial.tools import list_ports, list_ports_common

    device = tmp_path / "ttyACM0"
    device.write_text("")
    (tmp_path / "serial" / "by-id").mkdir(parents=True)
    link = tmp_path / "serial" / "by-id" / "usb-Arduino__www.arduino.cc__0043_123-if00"
    link.symlink_to(device)
    info = list_ports_common.ListPortInfo(str(device), skip_link_detection=True)
    info.vid, info.pid, info.description, info.serial_number = 0x2341, 0x0043, "Arduino Uno", "123"
    monkeypatch.setattr(list_ports, "comports", lambda: [info])
    [port] = discovery.list_serial_ports(dev_root=str(tmp_path))
    assert (port.device, port.vid_pid, port.description, port.by_id) == (
        str(device),
        "2341:0043",
        "Arduino Uno",
        str(link),
    )


def test_missing_sounddevice_leaves_a_note_and_no_devices(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    notes: list = []
    assert discovery.list_audio(notes) == []
    assert "sounddevice" in notes[0] and "rtcbot[audio]" in notes[0]


def test_missing_pyserial_leaves_a_note_and_no_ports(monkeypatch):
    monkeypatch.setitem(sys.modules, "serial.tools", None)
    notes: list = []
    assert discovery.list_serial_ports(notes) == []
    assert "pyserial" in notes[0]


def test_only_alsa_hw_devices_count_as_audio_hardware():
    assert discovery._is_hardware_audio("USB PnP Sound Device: Audio (hw:2,0)", "ALSA")
    assert not discovery._is_hardware_audio("pulse", "ALSA")
    assert not discovery._is_hardware_audio("default", "ALSA")
    assert discovery._is_hardware_audio("MacBook Pro Microphone", "Core Audio")


# ------------------------------------------------------------------------------------------ devices


def test_devices_lists_the_three_sections(capsys):
    code, out, _ = run_cli(capsys, "devices")
    assert code == 0
    for section in ("Cameras", "Audio", "Serial ports"):
        assert section in out


def test_devices_json_is_machine_readable(capsys):
    code, out, _ = run_cli(capsys, "devices", "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {f.name for f in dataclasses.fields(Inventory)}  # every kind discovery lists, and notes
    assert {"cameras", "audio", "serial", "notes"} <= set(data)


# ------------------------------------------------------------------------------------------ check


def reported_fps(out: str, label: str) -> float:
    line = next(line for line in out.splitlines() if line.lstrip().startswith("ok") and label in line)
    return float(re.search(r"([\d.]+) fps", line).group(1))


def reported_dbfs(out: str, label: str) -> float:
    line = next(line for line in out.splitlines() if line.lstrip().startswith("ok") and label in line)
    return float(re.search(r"(-?[\d.]+|-inf) dBFS", line).group(1))


def test_check_without_hardware_says_so_and_checks_the_simulated_devices(capsys, nothing_found):
    code, out, _ = run_cli(capsys, "check", "--seconds", "1.5")
    assert code == 0, out
    assert "No cameras, microphones or USB serial ports found" in out
    assert 20 <= reported_fps(out, "sim-camera") <= 40  # configured: 30 fps
    assert reported_dbfs(out, "sim-mic") > -20  # a -9 dBFS tone
    assert re.search(r"ok\s+sim-serial .*open, \d+ messages received", out)
    assert "All 3 devices OK." in out


def test_check_without_hardware_or_pyserial_skips_the_simulated_arduino(capsys, nothing_found, monkeypatch):
    monkeypatch.setitem(sys.modules, "serial", None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "serial" else real_find_spec(name, *a)
    )
    code, out, _ = run_cli(capsys, "check", "--seconds", "0.5")
    assert code == 0, out
    assert "skip  sim-serial: pyserial is not installed" in out
    assert "All 2 devices OK." in out


def test_check_sim_forces_the_simulated_devices(capsys, only):
    only(Inventory(cameras=[Camera(id="/dev/video99", kind="v4l2", name="never opened", index=99, capture=True)]))
    code, out, _ = run_cli(capsys, "check", "--sim", "--seconds", "1", "sim-camera")
    assert code == 0, out
    assert "never opened" not in out


def test_check_a_failing_device_prints_the_library_error_and_exits_nonzero(capsys, only):
    pytest.importorskip("cv2")
    only(Inventory(cameras=[Camera(id="/dev/video99", kind="v4l2", name="Ghost cam", index=99, capture=True)]))
    code, out, _ = run_cli(capsys, "check", "--seconds", "1")
    assert code == 1
    assert "FAIL  /dev/video99" in out
    assert "DeviceOpenError: CVCamera could not open" in out
    assert "'video' group" in " ".join(out.split())  # the library's advice comes through (wrapped)
    assert "1 of 1 devices FAILED" in out


def test_check_named_device_that_does_not_exist_is_a_usage_error(capsys, nothing_found):
    code, _, err = run_cli(capsys, "check", "no-such-thing")
    assert code == 2
    assert err.strip() == "rtcbot check: no device matches no-such-thing (see `rtcbot devices`)"


def test_check_named_simulated_device_checks_only_that_one(capsys, nothing_found):
    code, out, _ = run_cli(capsys, "check", "--seconds", "1", "sim-mic")
    assert code == 0, out
    assert "sim-mic" in out and "sim-camera" not in out


def test_check_a_serial_port_by_path(capsys, nothing_found):
    from rtcbot.devices.arduino_sim import SimulatedArduino

    with SimulatedArduino() as arduino:
        code, out, _ = run_cli(capsys, "check", "--seconds", "1", arduino.port)
    assert code == 0, out
    assert re.search(r"ok\s+" + re.escape(arduino.port), out)


def hw_mic(index: int, name: str) -> AudioDevice:
    return AudioDevice(
        id=f"audio:{index}", index=index, name=name, hostapi="ALSA", inputs=1, outputs=0, samplerate=48000
    )


def test_check_goes_through_the_sound_server_when_one_owns_the_cards():
    server = AudioDevice(
        id="audio:5", index=5, name="pulse", hostapi="ALSA", inputs=32, outputs=32, samplerate=44100, hardware=False
    )
    inv = Inventory(audio=[hw_mic(1, "USB Mic: Audio (hw:1,0)"), hw_mic(2, "Other: Audio (hw:2,0)"), server])
    [target] = check.audio_probes(inv)
    assert target.label.startswith("default in") and "via pulse" in target.label
    assert target.make.args == (None,)  # the default input, through the server


def test_check_opens_each_card_directly_without_a_sound_server():
    inv = Inventory(audio=[hw_mic(1, "USB Mic: Audio (hw:1,0)"), hw_mic(2, "Other: Audio (hw:2,0)")])
    assert [t.make.args for t in check.audio_probes(inv)] == [(1,), (2,)]


def test_check_a_missing_serial_port_fails_with_the_library_advice(capsys, nothing_found):
    code, out, _ = run_cli(capsys, "check", "--seconds", "1", "/dev/ttyNOPE0")
    assert code == 1
    assert "FAIL  /dev/ttyNOPE0  serial port\n        DeviceOpenError: " in out


def test_check_progress_is_rewritten_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    progress = output.Progress(term)
    progress.start("cam", 1)
    progress.update("cam", "0.5 s  15 frames")
    progress.done("cam", True, "30 fps")
    assert term.getvalue() == "\r\x1b[K  ..    cam  0.5 s  15 frames\r\x1b[K  ok    cam  30 fps\n"


def test_check_progress_is_plain_lines_when_piped():
    out = io.StringIO()
    progress = output.Progress(out)
    progress.start("cam", 1)
    progress.update("cam", "0.5 s  15 frames")
    progress.done("cam", False, "DeviceOpenError: ...")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        "  ..    cam  checking for 1 s",
        "  FAIL  cam",
        "        DeviceOpenError: ...",
    ]


def test_check_a_real_audio_device_through_microphone_and_speaker(capsys, pulse):
    code, out, _ = run_cli(capsys, "check", "--seconds", "1", pulse["device"])
    assert code == 0, out
    assert re.search(r"ok\s+audio:\d+ in .*dBFS\s+48000 Hz 2 ch\s+\d+ blocks\s+0 overflows", out), out
    assert re.search(r"ok\s+audio:\d+ out .*played 1 s of silence", out), out


def test_record_wav_from_a_real_audio_device(capsys, tmp_path, pulse):
    path = tmp_path / "rec.wav"
    code, _, err = run_cli(capsys, "record", str(path), "--seconds", "0.5", "--device", pulse["device"])
    assert code == 0, err
    with wave.open(str(path)) as w:
        assert w.getnframes() == 24000


def test_sound_server_devices_are_listed_as_virtual(capsys, pulse):
    code, out, _ = run_cli(capsys, "devices", "--json")
    [device] = [a for a in json.loads(out)["audio"] if a["name"] == "pulse"]
    assert device["hardware"] is False and device["inputs"] > 0


# ------------------------------------------------------------------------------------------ snapshot, record


def test_snapshot_sim_saves_a_png(capsys, tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "frame.png"
    code, out, _ = run_cli(capsys, "snapshot", str(path), "--sim", "--skip", "0")
    assert code == 0
    assert cv2.imread(str(path)).shape == (240, 320, 3)
    assert "saved 320x240 frame" in out


def test_snapshot_without_a_camera_suggests_sim(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(discovery, "discover", lambda: Inventory())
    code, _, err = run_cli(capsys, "snapshot", str(tmp_path / "x.png"))
    assert code == 2
    assert "no camera found" in err and "--sim" in err


def test_record_sim_wav_has_the_asked_length_and_sound(capsys, tmp_path):
    path = tmp_path / "tone.wav"
    code, _, _ = run_cli(capsys, "record", str(path), "--seconds", "0.5", "--sim")
    assert code == 0
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (48000, 1, 2)
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(samples) == 24000
    assert np.abs(samples).max() > 10000  # the 0.5 amplitude tone


def test_record_sim_video_is_playable(capsys, tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    code, out, _ = run_cli(capsys, "record", str(path), "--seconds", "1.5", "--sim")
    assert code == 0, out
    cap = cv2.VideoCapture(str(path))
    try:
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    assert 30 <= frames <= 50  # 1.5 s at 30 fps
    assert 20 <= fps <= 40  # measured, so the clip plays at the right speed


def test_snapshot_reads_a_video_file_through_cvcamera(capsys, tmp_path):
    cv2 = pytest.importorskip("cv2")
    clip, still = tmp_path / "clip.avi", tmp_path / "still.jpg"
    assert run_cli(capsys, "record", str(clip), "--seconds", "1.2", "--sim")[0] == 0
    code, out, err = run_cli(capsys, "snapshot", str(still), "--device", str(clip), "--skip", "3")
    assert code == 0, err
    assert cv2.imread(str(still)).shape == (240, 320, 3)


def test_record_unknown_file_type_is_a_usage_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "record", str(tmp_path / "x.gif"), "--seconds", "1", "--sim")
    assert code == 2
    assert ".avi" in err and ".wav" in err


# ------------------------------------------------------------------------------------------ entry points


def test_sim_serial_hands_its_options_to_the_simulator(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sim-serial", "--help"])
    assert exit_info.value.code == 0
    assert "rtcbot sim-serial" in capsys.readouterr().out


def test_python_dash_m_rtcbot_runs_the_command():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "rtcbot", "--version"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.startswith("rtcbot ")
