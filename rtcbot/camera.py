"""RTCBot's module path for cameras: ``from rtcbot.camera import CVCamera, PiCamera2, CVDisplay``.

The classes live in :mod:`rtcbot.devices`; this module keeps RTCBot scripts working unchanged::

    from rtcbot.camera import CVCamera, CVDisplay

    camera = CVCamera()
    display = CVDisplay()
    display.putSubscription(camera)

``PiCamera`` (RTCBot's class for the legacy ``picamera`` library, which Raspberry Pi OS dropped for
libcamera) is kept only to say so: use :class:`PiCamera2`, which takes the same arguments.
"""
from __future__ import annotations

from typing import Any, NoReturn

from rtcbot.devices.camera import CVCamera, Frame
from rtcbot.devices.display import CVDisplay
from rtcbot.devices.picamera import PiCamera2
from rtcbot.errors import MissingDependencyError

__all__ = ["CVCamera", "CVDisplay", "Frame", "PiCamera", "PiCamera2"]


class PiCamera:
    """RTCBot's camera class for the legacy ``picamera`` library. Raspberry Pi OS Bullseye and later have no
    legacy camera stack, and rtcbot does not support it: constructing one raises
    :class:`~rtcbot.MissingDependencyError` pointing at :class:`PiCamera2`::

        camera = PiCamera2(width=640, height=480, fps=30)   # instead of PiCamera(...)
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise MissingDependencyError(
            "rtcbot.camera.PiCamera was RTCBot's class for the legacy 'picamera' library, which Raspberry Pi OS "
            "replaced with libcamera (Bullseye and later) and rtcbot does not support. Use PiCamera2 instead, "
            "with the same arguments: `from rtcbot.camera import PiCamera2; camera = PiCamera2(width=640, "
            "height=480)` (it needs python3-picamera2: sudo apt install python3-picamera2)"
        )
