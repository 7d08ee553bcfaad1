"""Checks: the loopback checks bound to the session's devices, one line each in a test, their figures
recorded (JUnit XML properties, the end-of-run table). This is what the ``rtcbot_check`` fixture gives::

    def test_speaker_is_heard(rtcbot_check):
        result = rtcbot_check.audio_loopback(frequency=1000)
        assert result.heard, result

    def test_board_keeps_up(rtcbot_check):
        result = rtcbot_check.serial_round_trip(count=100)
        assert result.ok and result.latency_p90_ms < 20, result

    def test_camera_delivers_its_rate(rtcbot_check):
        result = rtcbot_check.camera_rate(seconds=2)
        assert result.ok, result

The checks themselves are async functions of any devices: :mod:`.loopback_audio`, :mod:`.loopback_serial`,
:mod:`.loopback_camera`.
"""

from __future__ import annotations

from typing import Any, Callable

from . import figures
from .loopback_audio import AudioLoopbackResult, audio_loopback
from .loopback_camera import CameraRateResult, camera_rate
from .loopback_serial import SerialRoundTripResult, serial_round_trip
from .pool import DevicePool

__all__ = ["Checks"]

_CHECK_TIMEOUT = 120.0


class Checks:
    """The loopback checks on the pool's devices; each runs on the session loop and records its figures."""

    def __init__(self, pool: DevicePool, record_property: Callable[[str, Any], None]) -> None:
        self._pool = pool
        self._record_property = record_property

    def _record(self, check: str, result: Any) -> Any:
        figures.record(self._record_property, check, result.figures())
        return result

    def audio_loopback(self, **kwargs: Any) -> AudioLoopbackResult:
        """Play a tone on ``rtcbot_speaker``, hear it on ``rtcbot_microphone``; see :func:`audio_loopback`."""
        speaker, microphone = self._pool.device("speaker"), self._pool.device("microphone")
        result = self._pool.loop.run(audio_loopback(speaker, microphone, **kwargs), _CHECK_TIMEOUT)
        return self._record("audio_loopback", result)

    def serial_round_trip(self, **kwargs: Any) -> SerialRoundTripResult:
        """Requests and answers on the board's connection; see :func:`serial_round_trip`."""
        connection = self._pool.connection()
        result = self._pool.loop.run(serial_round_trip(connection, **kwargs), _CHECK_TIMEOUT)
        return self._record("serial_round_trip", result)

    def camera_rate(self, **kwargs: Any) -> CameraRateResult:
        """Frames delivered against the rate the camera reports; see :func:`camera_rate`."""
        camera = self._pool.device("camera")
        kwargs.setdefault("asked_fps", self._pool.settings("camera").get("fps", 30))
        result = self._pool.loop.run(camera_rate(camera, **kwargs), _CHECK_TIMEOUT)
        return self._record("camera_rate", result)
