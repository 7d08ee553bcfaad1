"""RTCBot's module paths for serial and sound (``rtcbot.arduino``, ``rtcbot.audio``): the same classes,
the same leading parameters as RTCBot's, and importing them stays light."""
from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import rtcbot

# RTCBot's signatures: name and default of each leading parameter, in order.
RTCBOT_SERIAL = [
    ("url", "/dev/ttyS0"),
    ("readFormat", "\n"),
    ("writeFormat", None),
    ("baudrate", 115200),
    ("writeKeys", None),
    ("readKeys", None),
    ("startByte", None),
    ("delayWriteStart", 0),
    ("loop", None),
]
RTCBOT_AUDIO = [("samplerate", 48000), ("channels", None), ("blocksize", 1024), ("device", None), ("loop", None)]


def leading_parameters(cls: type, count: int) -> list:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1 : count + 1]
    return [(p.name, p.default) for p in parameters]


def test_serial_connection_is_at_rtcbots_module_path_with_its_signature():
    from rtcbot.arduino import SerialConnection

    assert SerialConnection is rtcbot.SerialConnection
    assert leading_parameters(SerialConnection, len(RTCBOT_SERIAL)) == RTCBOT_SERIAL


@pytest.mark.parametrize("name", ["Microphone", "Speaker"])
def test_sound_devices_are_at_rtcbots_module_path_with_their_signature(name):
    import rtcbot.audio

    cls = getattr(rtcbot.audio, name)
    assert cls is getattr(rtcbot, name)
    assert leading_parameters(cls, len(RTCBOT_AUDIO)) == RTCBOT_AUDIO


@pytest.mark.parametrize("cls_name", ["SerialConnection", "Speaker"])
def test_every_process_device_takes_start_method(cls_name):
    parameter = inspect.signature(getattr(rtcbot, cls_name).__init__).parameters["start_method"]
    assert parameter.default is None and parameter.kind is inspect.Parameter.KEYWORD_ONLY


def test_speaker_has_rtcbots_play_and_play_stream():
    from rtcbot.audio import Speaker

    assert callable(Speaker.play) and callable(Speaker.playStream)


def test_importing_rtcbots_module_paths_imports_no_device_library():
    code = (
        "import sys, rtcbot.arduino, rtcbot.audio\n"
        "loaded = sorted(m for m in ('serial', 'sounddevice', '_sounddevice', 'cv2') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
