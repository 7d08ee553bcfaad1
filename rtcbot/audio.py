"""RTCBot's module path for the sound devices, so RTCBot scripts run unchanged::

    from rtcbot.audio import Microphone, Speaker

    mic = Microphone()
    speaker = Speaker()
    speaker.playStream(mic.subscribe())     # RTCBot's name for speaker.putSubscription(mic)

They are :class:`rtcbot.devices.audio.Microphone` and :class:`rtcbot.devices.audio.Speaker` (also
``rtcbot.Microphone`` and ``rtcbot.Speaker``). Importing this module does not import sounddevice or
PortAudio: that happens when a device is created.
"""
from __future__ import annotations

from .devices.audio import Microphone, Speaker

__all__ = ["Microphone", "Speaker"]
