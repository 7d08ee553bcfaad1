"""The pure parts of rtcbot.testing on their own: the loopback analysis, selectors and the configuration,
choosing a device by identity, the figure table."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rtcbot.discovery import AudioDevice, Camera, Inventory, SerialPort
from rtcbot.testing.config import HwConfigError, load_config, parse_selector
from rtcbot.testing.figures import FigureTable
from rtcbot.testing.loopback_audio import analyse_loopback, tone
from rtcbot.testing.loopback_serial import SerialRoundTripResult
from rtcbot.testing.selection import DeviceNotFound, select_device

RATE = 48000


def noise(seconds: float, level: float = 0.003, seed: int = 1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def recording_with_tone(delay: float, frequency: float = 1000, amplitude: float = 0.3) -> np.ndarray:
    recording = noise(1.5, seed=2)
    start = int(delay * RATE)
    burst = tone(frequency, 0.5, RATE, amplitude)
    recording[start : start + len(burst)] += burst
    return recording


# -------------------------------------------------------------------------------------------- loopback
def test_a_tone_is_heard_with_its_frequency_level_and_latency():
    # played at t=10.0; the recording starts at 10.02; the tone is in it from 0.1 s: 120 ms latency
    result = analyse_loopback(noise(0.25), recording_with_tone(0.1), 10.02, 10.0, 1000, RATE)
    assert result.heard, result
    assert result.frequency_hz == pytest.approx(1000, abs=1)
    assert result.level_dbfs == pytest.approx(20 * math.log10(0.3 / math.sqrt(2)), abs=0.5)
    assert result.noise_floor_dbfs == pytest.approx(20 * math.log10(0.003), abs=1)
    assert result.latency_ms == pytest.approx(120, abs=3)


def test_silence_is_not_heard():
    result = analyse_loopback(noise(0.25), noise(1.5, seed=3), 0.0, 0.0, 1000, RATE)
    assert not result.heard and result.frequency_hz is None and result.latency_ms is None
    assert "not heard" in str(result)
    assert math.isnan(result.figures()["latency_ms"]) and result.figures()["heard"] == 0


def test_a_serial_round_trip_says_the_percentiles_a_test_asserts():
    # The documented assertion is on the p90: a failing one shows it (and the p99, and the max) in its message.
    result = SerialRoundTripResult(sent=10, answered=10, seconds=1.0, latencies_ms=[float(i) for i in range(1, 11)])
    assert result.latency_p90_ms == pytest.approx(9.1)
    assert "p50 5.50 ms, p90 9.10 ms, p99 9.91 ms, max 10.00 ms" in str(result)


def test_a_tone_at_another_frequency_is_not_heard():
    recording = recording_with_tone(0.1, frequency=1000)
    result = analyse_loopback(noise(0.25), recording, 0.0, 0.0, 1500, RATE)
    assert not result.heard


def test_a_tone_lost_in_the_noise_is_not_heard():
    loud_noise = noise(1.5, level=0.1, seed=4)
    loud_noise[4800:28800] += tone(1000, 0.5, RATE, 0.01)
    result = analyse_loopback(noise(0.25, level=0.1), loud_noise, 0.0, 0.0, 1000, RATE, min_snr_db=10)
    assert not result.heard


# -------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "text, identity",
    [
        ("/dev/rtcbot/arduino", {"path": "/dev/rtcbot/arduino"}),
        ("2341:0043", {"vid_pid": "2341:0043"}),
        ("2341:ABCD", {"vid_pid": "2341:abcd"}),
        ("serial:85736323", {"serial_number": "85736323"}),
        ("by-id:usb-Arduino_Uno-if00", {"by_id": "usb-Arduino_Uno-if00"}),
        ("name:USB Audio", {"name": "USB Audio"}),
        ("index:3", {"index": 3}),
        ("3", {"index": 3}),
        ("csi:0", {"csi": 0}),
    ],
)
def test_a_selector_names_a_device_by_one_identity(text, identity):
    assert parse_selector(text) == identity


def test_a_bad_selector_says_what_is_expected():
    with pytest.raises(HwConfigError, match="expected a path.*vid:pid"):
        parse_selector("arduino")


def test_the_table_splits_identity_from_settings_and_selectors_replace_the_identity():
    table = {
        "camera": {"by_id": "usb-cam", "width": 640, "fps": 15},
        "serial_board": {"vid_pid": "2341:0043", "options": {"framed": True}},
    }
    configs = load_config(table, ini={"camera": "/dev/video2"}, overrides={"serial_board": "serial:X1"})
    assert configs["camera"].identity == {"path": "/dev/video2"}
    assert configs["camera"].settings == {"width": 640, "fps": 15}
    assert configs["serial_board"].identity == {"serial_number": "X1"}
    assert configs["serial_board"].settings == {"options": {"framed": True}}
    assert configs["microphone"].identity == {} and configs["speaker"].settings == {}


def test_an_unknown_device_kind_in_the_table_is_an_error_listing_the_known_ones():
    with pytest.raises(HwConfigError, match="unknown device kind.*'lidar'.*camera"):
        load_config({"lidar": {"path": "/dev/ttyUSB0"}})


# -------------------------------------------------------------------------------------------- selection
MACHINE = Inventory(
    cameras=[
        Camera(id="/dev/video0", kind="v4l2", name="Integrated Camera", index=0, capture=True),
        Camera(id="/dev/video1", kind="v4l2", name="Integrated Camera", index=1, capture=False),
        Camera(id="/dev/video2", kind="v4l2", name="C270 HD WEBCAM", index=2, capture=True,
               stable_path="/dev/v4l/by-id/usb-046d_C270_HD_WEBCAM-video-index0"),
        Camera(id="csi:0", kind="csi", name="imx708", index=0, capture=True),
    ],
    audio=[
        AudioDevice(id="audio:0", index=0, name="HDA Intel PCH: ALC257 (hw:0,0)", hostapi="ALSA", inputs=2,
                    outputs=2, samplerate=48000),
        AudioDevice(id="audio:1", index=1, name="USB Audio Device (hw:1,0)", hostapi="ALSA", inputs=1,
                    outputs=0, samplerate=48000),
        AudioDevice(id="audio:2", index=2, name="default", hostapi="ALSA", inputs=32, outputs=32,
                    samplerate=44100, default_input=True, default_output=True, hardware=False),
    ],
    serial=[
        SerialPort(id="/dev/ttyS0", device="/dev/ttyS0", description="ttyS0"),
        SerialPort(id="/dev/ttyACM0", device="/dev/ttyACM0", description="Arduino Uno", vid_pid="2341:0043",
                   serial_number="UNO1", by_id="/dev/serial/by-id/usb-Arduino_Uno_UNO1-if00",
                   links=["/dev/rtcbot/arduino"]),
    ],
)


def select(kind: str, **identity):
    configs = load_config({kind: identity})
    return select_device(configs[kind], MACHINE)


def test_a_serial_board_is_opened_at_its_stable_by_id_path():
    assert select("serial_board", vid_pid="2341:0043").target == "/dev/serial/by-id/usb-Arduino_Uno_UNO1-if00"
    assert select("serial_board", serial_number="UNO1").target.endswith("UNO1-if00")
    assert select("serial_board", by_id="usb-Arduino_Uno_UNO1-if00").target.endswith("UNO1-if00")


def test_without_identity_the_first_usb_serial_board_is_chosen_not_the_uart():
    assert select("serial_board").target == "/dev/serial/by-id/usb-Arduino_Uno_UNO1-if00"


def test_a_camera_is_chosen_by_by_id_name_or_csi_number_and_never_a_metadata_node():
    assert select("camera", by_id="usb-046d_C270_HD_WEBCAM-video-index0").target.endswith("index0")
    assert select("camera", name="c270").target == "/dev/v4l/by-id/usb-046d_C270_HD_WEBCAM-video-index0"
    assert select("camera", csi=0).target == "csi:0"
    with pytest.raises(DeviceNotFound):
        select("camera", index=1)  # a metadata node: not a camera


def test_audio_defaults_to_the_default_devices_and_matches_names_by_part():
    assert select("microphone").target == 2
    assert select("microphone", name="usb audio").target == 1
    with pytest.raises(DeviceNotFound, match="found: 0 'HDA Intel"):
        select("speaker", name="USB")  # an input only


def test_a_missing_device_names_what_was_wanted_and_what_is_there():
    with pytest.raises(DeviceNotFound) as info:
        select("serial_board", vid_pid="1a86:7523")
    message = str(info.value)
    assert "no serial board vid_pid='1a86:7523'" in message and "2341:0043 serial UNO1" in message
    assert "[tool.rtcbot.hw.serial_board]" in message and "rtcbot devices" in message


def test_an_identity_key_a_kind_cannot_use_is_an_error():
    with pytest.raises(DeviceNotFound, match="cannot be chosen by 'vid_pid'"):
        select("camera", vid_pid="046d:0825")


# -------------------------------------------------------------------------------------------- figures
def test_the_figure_table_keeps_only_rtcbot_properties_in_order():
    table = FigureTable()
    table.add_report("t.py::a", [("rtcbot.serial.p50_ms", 1.23456), ("junk", 1)])
    table.add_report("t.py::b", [("rtcbot.camera.fps", 29.97)])
    lines = table.lines()
    assert lines[0].split() == ["test", "figure", "value"]
    assert [line.split() for line in lines[1:]] == [
        ["t.py::a", "serial.p50_ms", "1.235"],
        ["t.py::b", "camera.fps", "29.97"],
    ]
