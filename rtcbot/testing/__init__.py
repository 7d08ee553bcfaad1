"""rtcbot.testing: hardware-in-the-loop tests for robots, as a pytest plugin installed with rtcbot.

Tests get the robot's devices from fixtures: simulated by default (anywhere, in CI), the real ones with
``pytest --hw``, chosen by stable identity from ``[tool.rtcbot.hw]`` in pyproject.toml::

    def test_board_answers_quickly(rtcbot_check):
        result = rtcbot_check.serial_round_trip(count=100)
        assert result.ok and result.latency_p90_ms < 20, result

    def test_robot_stops_when_the_board_is_unplugged(rtcbot_run, rtcbot_serial_board, rtcbot_faults):
        ...

See :mod:`rtcbot.testing.plugin` for the fixtures and markers, :mod:`rtcbot.testing.config` for the
configuration. The checks are usable outside pytest too (``await audio_loopback(speaker, microphone)``).

Nothing here imports a device library until it is used.
"""

from __future__ import annotations

from rtcbot._lazy import lazy_exports

_LAZY = {
    "AudioLoopbackResult": "rtcbot.testing.loopback_audio",
    "audio_loopback": "rtcbot.testing.loopback_audio",
    "analyse_loopback": "rtcbot.testing.loopback_audio",
    "CameraRateResult": "rtcbot.testing.loopback_camera",
    "camera_rate": "rtcbot.testing.loopback_camera",
    "SerialRoundTripResult": "rtcbot.testing.loopback_serial",
    "serial_round_trip": "rtcbot.testing.loopback_serial",
    "DeviceConfig": "rtcbot.testing.config",
    "DeviceNotFound": "rtcbot.testing.selection",
    "select_device": "rtcbot.testing.selection",
    "SimRoom": "rtcbot.testing.sim_room",
    "RoomMicrophone": "rtcbot.testing.sim_room",
    "RoomSpeaker": "rtcbot.testing.sim_room",
    "FaultyCamera": "rtcbot.testing.faults",
    "FaultyMicrophone": "rtcbot.testing.faults",
    "SessionLoop": "rtcbot.testing.session_loop",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
