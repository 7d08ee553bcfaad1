"""Import a device library at first use, turning ImportError into advice on what to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# module name -> (pip extra / package, apt package or None, what it is for)
_ADVICE = {
    "cv2": ("pip install 'rtcbot[camera]' (opencv-python-headless)", "python3-opencv", "OpenCV cameras"),
    "sounddevice": ("pip install 'rtcbot[audio]' (sounddevice)", "libportaudio2", "audio devices"),
    "serial": ("pip install 'rtcbot[serial]' (pyserial)", "python3-serial", "serial ports"),
    "picamera2": (
        "on Raspberry Pi OS it comes from apt, not pip",
        "python3-picamera2",
        "Raspberry Pi CSI cameras",
    ),
    "libcamera": (
        "on Raspberry Pi OS it comes from apt, not pip",
        "python3-libcamera",
        "Raspberry Pi CSI cameras",
    ),
    "zenoh": ("pip install 'rtcbot[net]' (eclipse-zenoh)", None, "streaming between hosts"),
    "evdev": ("pip install 'rtcbot[inputs]' (evdev)", "python3-evdev", "gamepads, keyboards and mice"),
    "aiortc": ("pip install 'rtcbot[web]' (aiortc)", None, "WebRTC to browsers"),
    "aiohttp": ("pip install 'rtcbot[web]' (aiohttp)", "python3-aiohttp", "the web server and websockets"),
    "av": ("pip install 'rtcbot[web]' (av, which aiortc installs)", None, "video packets for WebRTC"),
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` saying how to install it::

        cv2 = require("cv2")
    """
    try:
        return importlib.import_module(module)
    except OSError as e:  # the Python package is there but its C library is not (sounddevice: PortAudio)
        pip, apt, purpose = _ADVICE.get(module, (f"pip install {module}", None, module))
        raise MissingDependencyError(
            f"rtcbot needs the '{module}' module for {purpose}; it is installed but could not load its system "
            f"library ({e})." + (f" Install it: sudo apt install {apt}." if apt else "")
        ) from e
    except ImportError as e:
        pip, apt, purpose = _ADVICE.get(module, (f"pip install {module}", None, module))
        hint = f"{pip}" + (f", or apt install {apt}" if apt else "")
        raise MissingDependencyError(
            f"rtcbot needs the '{module}' module for {purpose}, and importing it failed ({e}). "
            f"Install it: {hint}."
        ) from e
