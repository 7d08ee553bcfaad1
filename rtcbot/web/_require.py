"""Import a library of the ``web`` extra (aiortc, aiohttp, av) at first use, saying what to install."""

from __future__ import annotations

from types import ModuleType

from .._deps import require
from ..errors import MissingDependencyError

__all__ = ["require_web"]


def require_web(module: str) -> ModuleType:
    """``module``, or a MissingDependencyError naming the ``web`` extra::

    aiortc = require_web("aiortc")
    """
    try:
        return require(module)
    except MissingDependencyError as e:
        raise MissingDependencyError(
            f"rtcbot's browser support (WebRTC, the dashboard) needs '{module}', which did not import: "
            f"pip install 'rtcbot[web]' (aiortc, aiohttp and PyAV, from wheels on 64-bit Raspberry Pi OS "
            f"and x86-64). [{e}]"
        ) from e
