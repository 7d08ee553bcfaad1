"""Device producers and consumers, one module per kind of device.

Nothing is imported here: ``from rtcbot import CVCamera`` loads :mod:`rtcbot.devices.camera` (and OpenCV)
only when a script first uses it, so a robot without a camera never needs OpenCV installed.

- :mod:`rtcbot.devices.camera`: :class:`CVCamera` (USB/V4L2 cameras, video files, streams) and
  :class:`Frame`, the image type every camera delivers.
- :mod:`rtcbot.devices.picamera`: :class:`PiCamera2` (Raspberry Pi CSI cameras through picamera2).
- :mod:`rtcbot.devices.display`: :class:`CVDisplay` (OpenCV windows).
- :mod:`rtcbot.devices.audio`: :class:`Microphone` and :class:`Speaker` (sound cards through PortAudio).
- :mod:`rtcbot.devices.audio_blocks`: :class:`AudioBlock` and the pure conversion and playback-buffer code.
- :mod:`rtcbot.devices.serial`: :class:`SerialConnection` (Arduinos, motor controllers, any pyserial URL),
  with its framing in :mod:`rtcbot.devices.framing`.
- :mod:`rtcbot.devices.sim`: :class:`SimCamera`, :class:`SimMicrophone`, :class:`SimSpeaker`;
  :mod:`rtcbot.devices.arduino_sim`: a simulated Arduino on a pty.
"""
