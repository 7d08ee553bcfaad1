"""A stand-in for the ``sounddevice`` module, for the faults a real PortAudio on a null sink cannot produce.

Only what rtcbot's audio devices use: ``query_devices``, ``check_input_settings``/``check_output_settings``,
``InputStream`` (blocking ``read``), ``OutputStream`` (a callback driven at real-time pace by a thread),
``PortAudioError``. Streams run on the fake device's own clock and produce a constant per channel
(channel ``c`` reads ``(c + 1) / 10``) so channel selection is visible.

Faults are configured through the environment, so they also reach a Speaker's child process: set
``RTCBOT_FAKE_SOUNDDEVICE`` to a JSON object with any of

- ``"lose_after": n``: the device disappears after ``n`` reads (input) or callbacks (output): ``read``
  raises ``PortAudioError``; an output stream stops and calls its ``finished_callback``, as PortAudio does;
- ``"start_error": "message"``: ``start()`` raises ``PortAudioError(message)``;
- ``"open_error": "message"``: creating a stream raises ``PortAudioError(message)`` (the settings checks
  still pass, as when another program grabbed the device in between);
- ``"overflow_every": n``: every ``n``-th ``read`` reports an input overflow;
- ``"samplerates": [..]``: the only rates ``check_*_settings`` accept (default: any);
- ``"events": "/path"``: append one line per stream event (``open output``, ``start``, ``callback``,
  ``finished``, ``close``...) to that file, so a test can see what happened in another process.

::

    monkeypatch.setenv("RTCBOT_FAKE_SOUNDDEVICE", json.dumps({"lose_after": 5}))
    monkeypatch.setitem(sys.modules, "sounddevice", fakes.sounddevice)
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

__version__ = "0.0-fake"
ENV = "RTCBOT_FAKE_SOUNDDEVICE"

_DEVICES: List[Dict[str, Any]] = [
    {
        "name": "fake card: analog (hw:0,0)",
        "index": 0,
        "hostapi": 0,
        "max_input_channels": 2,
        "max_output_channels": 2,
        "default_low_input_latency": 0.01,
        "default_low_output_latency": 0.01,
        "default_high_input_latency": 0.04,
        "default_high_output_latency": 0.04,
        "default_samplerate": 48000.0,
    },
    {
        "name": "fake usb mic (hw:1,0)",
        "index": 1,
        "hostapi": 0,
        "max_input_channels": 1,
        "max_output_channels": 0,
        "default_low_input_latency": 0.01,
        "default_low_output_latency": 0.01,
        "default_high_input_latency": 0.04,
        "default_high_output_latency": 0.04,
        "default_samplerate": 44100.0,
    },
]


class PortAudioError(Exception):
    """As sounddevice's: raised when a PortAudio call fails."""


class CallbackStop(Exception):
    pass


class CallbackAbort(Exception):
    pass


class DeviceList(tuple):
    def __repr__(self) -> str:
        return "\n".join(
            f"  {d['index']} {d['name']}, FAKE ({d['max_input_channels']} in, {d['max_output_channels']} out)"
            for d in self
        )


class _Status:
    """As sounddevice.CallbackFlags: falsy when nothing happened."""

    def __init__(self) -> None:
        self.output_underflow = False
        self.input_overflow = False

    def __bool__(self) -> bool:
        return self.output_underflow or self.input_overflow


def _faults() -> Dict[str, Any]:
    return json.loads(os.environ.get(ENV) or "{}")


def _event(text: str) -> None:
    path = _faults().get("events")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


def _matches(info: Dict[str, Any], device: Any) -> bool:
    if isinstance(device, int):
        return bool(info["index"] == device)
    return str(device).lower() in str(info["name"]).lower()


def query_devices(device: Any = None, kind: Optional[str] = None) -> Any:
    if device is None and kind is None:
        return DeviceList(dict(d) for d in _DEVICES)
    want = f"max_{kind}_channels" if kind else None
    if device is None:
        device = 0
    found = [d for d in _DEVICES if _matches(d, device) and (want is None or d[want] > 0)]
    if len(found) > 1:
        raise ValueError(f"Multiple {kind} devices found for {device!r}")
    if found:
        return dict(found[0])
    if isinstance(device, int):
        raise PortAudioError(f"Error querying device {device}")
    raise ValueError(f"No {kind or ''} device matching {device!r}".replace("  ", " "))


def _check(
    kind: str, device: Any = None, channels: Any = None, dtype: Any = None, samplerate: Any = None, **_: Any
) -> None:
    info = query_devices(device, kind)
    if channels is not None and channels > info[f"max_{kind}_channels"]:
        raise PortAudioError(f"Error opening {kind} stream: Invalid number of channels [PaErrorCode -9998]")
    rates = _faults().get("samplerates")
    if rates is not None and samplerate is not None and float(samplerate) not in [float(r) for r in rates]:
        raise PortAudioError(f"Error opening {kind} stream: Invalid sample rate [PaErrorCode -9997]")


def check_input_settings(**kwargs: Any) -> None:
    _check("input", **kwargs)


def check_output_settings(**kwargs: Any) -> None:
    _check("output", **kwargs)


class _Stream:
    kind = "stream"

    def __init__(
        self,
        device: Any = None,
        channels: Any = None,
        samplerate: Any = None,
        blocksize: Any = None,
        dtype: Any = None,
        latency: Any = None,
        callback: Optional[Callable[..., Any]] = None,
        finished_callback: Optional[Callable[[], None]] = None,
        **_: Any,
    ) -> None:
        _check(self.kind, device=device, channels=channels, samplerate=samplerate)
        message = _faults().get("open_error")
        if message:
            raise PortAudioError(message)
        self.device = query_devices(device, self.kind)["index"]
        self.channels = channels or 1
        self.samplerate = float(samplerate or 48000)
        self.blocksize = blocksize or 0
        self.dtype = dtype or "float32"
        self.latency = 0.01
        self._callback = callback
        self._finished_callback = finished_callback
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._count = 0
        self.active = False
        self.closed = False
        _event(f"open {self.kind}")

    def _lost(self) -> bool:
        limit = _faults().get("lose_after")
        return limit is not None and self._count >= limit

    def start(self) -> None:
        message = _faults().get("start_error")
        if message:
            raise PortAudioError(message)
        self._stop.clear()
        self.active = True
        _event("start")
        if self._callback is not None:
            self._thread = threading.Thread(target=self._run_callbacks, name="fake-portaudio", daemon=True)
            self._thread.start()

    def _run_callbacks(self) -> None:
        frames = self.blocksize or 512
        period = frames / self.samplerate
        next_due = time.monotonic()
        out = np.zeros((frames, self.channels), np.float32)
        try:
            while not self._stop.is_set():
                if self._lost():
                    _event("lost")
                    break
                assert self._callback is not None
                try:
                    self._callback(out, frames, None, _Status())
                except CallbackStop:
                    break
                except CallbackAbort:
                    break
                self._count += 1
                if self._count == 1:
                    _event("callback")
                next_due += period
                self._stop.wait(max(0.0, next_due - time.monotonic()))  # the fake device's clock
        finally:
            self.active = False
            _event("finished")
            if self._finished_callback is not None:
                self._finished_callback()

    def _halt(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        self.active = False

    def stop(self) -> None:
        self._halt()
        _event("stop")

    def abort(self) -> None:
        self._halt()
        _event("abort")

    def close(self, ignore_errors: bool = True) -> None:
        if self.closed:
            return
        self._halt()
        self.closed = True
        _event("close")

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InputStream(_Stream):
    kind = "input"
    read_available = 0  # reads are paced by the fake clock: nothing is ever waiting

    def read(self, frames: int) -> Any:
        if self.closed or not self.active:
            raise PortAudioError("Stream is stopped [PaErrorCode -9983]")
        if self._lost():
            _event("lost")
            raise PortAudioError("Error reading from stream: Unanticipated host error [PaErrorCode -9999]")
        self._stop.wait(frames / self.samplerate)  # the fake device's clock
        self._count += 1
        every = _faults().get("overflow_every")
        overflowed = bool(every) and self._count % every == 0
        levels = (np.arange(self.channels, dtype=np.float32) + 1) / 10
        return np.repeat(levels[np.newaxis, :], frames, axis=0), overflowed


class OutputStream(_Stream):
    kind = "output"
